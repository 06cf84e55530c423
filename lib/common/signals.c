/* lib/common/signals.c — see signals.h. */
#include <signal.h>
#include <string.h>

#include "common/signals.h"

void kiln_stop_signals_install(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* libFuzzer target: arbitrary bytes as a kiln YAML config file. */
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_config cfg;
    kiln_err err = {0};
    kiln_config_defaults(&cfg);
    if (kiln_config_load_string(&cfg, (const char *)data, size, "fuzz.yaml", &err) == KILN_OK)
        kiln_config_validate(&cfg, &err);
    return 0;
}

/* tests/support/chromium.h — Debian's headless Chromium, for tests that
 * load kiln's web pages the way a user's browser does.
 *
 * Every call runs one Chromium in its own process group with a fresh
 * profile directory (also its HOME, so crash reports and caches land
 * there), no network beyond what the URL names, no GPU, no sandbox (tests
 * may run as root). When the call returns, Chromium is gone: the group is
 * killed, any helper that left the group (crashpad) is found by its
 * profile path and killed, and the directory is removed — also after a
 * timeout.
 */
#ifndef KILN_TEST_CHROMIUM_H
#define KILN_TEST_CHROMIUM_H

/* The Chromium binary ($KILN_CHROMIUM, else /usr/bin/chromium or
 * chromium / chromium-browser on PATH), or NULL when none is installed. */
const char *kt_chromium_path(void);

/* Load `url` and return the DOM as Chromium serialises it after the page
 * loaded (--dump-dom; malloc'ed), or NULL after printing why (exit status,
 * timeout, the tail of Chromium's log). */
char *kt_chromium_dump_dom(const char *url);

/* Render `url` in a width × height window and write a PNG of the view to
 * `png_path`. Returns 0, or -1 after printing why. */
int kt_chromium_screenshot(const char *url, const char *png_path, int width, int height);

#endif

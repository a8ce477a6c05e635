/* dash: the dashboard's files (controller/dash/, and Debian's Chart.js),
 * compiled into the binary at build time by dash_embed.cmake; httpapi.c
 * serves them at /. */
#ifndef SKIFF_DASH_H
#define SKIFF_DASH_H

#include <stddef.h>

typedef struct dash_asset {
    const char *name;          /* "index.html", "chart.min.js" */
    const char *type;          /* its Content-Type */
    const unsigned char *data;
    size_t len;
} dash_asset_t;

extern const dash_asset_t dash_assets[];
extern const size_t dash_n_assets;

#endif

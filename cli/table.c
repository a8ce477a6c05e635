/* table: see table.h. */
#include "table.h"
#include "parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_MIN_WIDTH 10
#define TABLE_PADDING 3

struct table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows * ncols */
    size_t *widths;
};

size_t table_width(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

table_t *table_create(size_t ncols, const char *const *headers)
{
    table_t *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->ncols = ncols;
    t->widths = calloc(ncols, sizeof(*t->widths));
    if (!t->widths || (headers && table_add(t, headers))) {
        table_free(t);
        return NULL;
    }
    return t;
}

int table_add(table_t *t, const char *const *cells)
{
    char **row;

    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **grown = realloc(t->cells, cap * t->ncols * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        t->cells = grown;
        t->cap = cap;
    }
    row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return -ENOMEM;
        }
        parse_one_line(row[i]); /* a newline in a cell would break the table */
    }
    for (size_t i = 0; i < t->ncols; i++) {
        size_t w = table_width(row[i]);
        if (w > t->widths[i])
            t->widths[i] = w;
    }
    t->nrows++;
    return 0;
}

void table_print(const table_t *t, FILE *out)
{
    for (size_t r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + r * t->ncols;
        for (size_t c = 0; c < t->ncols; c++) {
            size_t width = t->widths[c] + TABLE_PADDING, w = table_width(row[c]);
            fputs(row[c], out);
            if (c + 1 == t->ncols)
                break;
            if (width < TABLE_MIN_WIDTH)
                width = TABLE_MIN_WIDTH;
            for (; w < width; w++)
                fputc(' ', out);
        }
        fputc('\n', out);
    }
}

void table_free(table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->widths);
    free(t);
}

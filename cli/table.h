/* table: text columns aligned as `docker service ls` aligns them (Go's
 * tabwriter with a minimum width of 10 and a padding of 3).
 *
 * Cells are copied; widths count UTF-8 characters, not bytes. The last
 * column is not padded.
 */
#ifndef SKIFF_CLI_TABLE_H
#define SKIFF_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct table table_t;

/* A table with ncols columns and these headers (NULL: none). NULL when out
 * of memory. */
table_t *table_create(size_t ncols, const char *const *headers);

/* Appends a row of ncols cells (NULL cells print as ""). Returns 0 or
 * -ENOMEM. */
int table_add(table_t *t, const char *const *cells);

void table_print(const table_t *t, FILE *out);
void table_free(table_t *t);

/* The display width of a UTF-8 string. */
size_t table_width(const char *s);

#endif

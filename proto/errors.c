/* errors: see errors.h. */
#include "errors.h"

#include <string.h>

const char *skiff_strerror(int code)
{
    switch (code) {
#define SKIFF_ERROR_CASE(name, num, text) case num: return text;
    SKIFF_ERRORS(SKIFF_ERROR_CASE)
#undef SKIFF_ERROR_CASE
    case 0:
        return "success";
    default:
        return code < 0 && code > -1000 ? strerror(-code) : "unknown error";
    }
}

/* libpht version: PHT_VERSION_NUMBER is major*1000000 + minor*1000 + patch. */
#ifndef PHT_VERSION_H
#define PHT_VERSION_H

#include "pht/export.h"

#define PHT_VERSION_MAJOR 0
#define PHT_VERSION_MINOR 1
#define PHT_VERSION_PATCH 0
#define PHT_VERSION_NUMBER 1000
#define PHT_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The version the library was built as (may differ from the header's). */
PHT_API int pht_version_number(void);
PHT_API const char *pht_version_string(void);

#ifdef __cplusplus
}
#endif
#endif

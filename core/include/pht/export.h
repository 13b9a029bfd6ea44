/* Symbol visibility for libpht: everything not marked PHT_API stays hidden. */
#ifndef PHT_EXPORT_H
#define PHT_EXPORT_H

#if defined(PHT_STATIC)
#define PHT_API
#elif defined(_WIN32)
#if defined(PHT_BUILDING)
#define PHT_API __declspec(dllexport)
#else
#define PHT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define PHT_API __attribute__((visibility("default")))
#else
#define PHT_API
#endif

#endif

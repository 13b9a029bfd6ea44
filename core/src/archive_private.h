/*
 * What the docker-archive transport's reading side (image_archive.c) and its
 * commit (archive_commit.c) share: the catalog of an archive's members.
 */
#ifndef PHT_ARCHIVE_PRIVATE_H
#define PHT_ARCHIVE_PRIVATE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "transport_private.h"

/* A member of the outer tar: its name, symlink target, type and where its data lies. */
typedef struct member {
    char *name;
    char *link; /* symlink target */
    int type;
    uint64_t off, size;
} member;

/* The outer tar read once: its members and manifest.json. */
typedef struct catalog {
    int fd;
    member *m;
    size_t n;
    cJSON *manifest;
    const char *path;
} catalog;

/* Read the archive at path (o's limits): every member's offset, and its manifest. */
int archive_catalog_open(const char *path, const pht_image_opts *o, catalog *c, pht_error *err);
/* The member name names, its symlinks followed inside the archive; NULL with err set. */
const member *archive_catalog_find(const catalog *c, const char *name, pht_error *err);
void archive_catalog_free(catalog *c);
/* 1 if two tags are the same once docker.io/ and docker.io/library/ are left out. */
int archive_tag_eq(const char *a, const char *b);

/* The transport's commit: the new archive written beside where, then renamed over it. */
int archive_commit(const char *where, const img_plan *p, pht_error *err);

#endif

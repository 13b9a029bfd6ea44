/*
 * What the docker-daemon transport's reading side (image_daemon.c) and its
 * commit (daemon_commit.c) share.
 */
#ifndef PHT_DAEMON_PRIVATE_H
#define PHT_DAEMON_PRIVATE_H

#include "transport_private.h"
#include "pht/docker.h"

/* The transport's state of an open image (pht_image.tpdata). */
typedef struct dmn {
    char id[PHT_DOCKER_ID_MAX]; /* every call after the first names this */
    char *tag;                  /* the NAME[:TAG] read, NULL for an id or digest */
    int failed[3];              /* by IMG_LANDED_*: a landing that failed, returned again */
    pht_error why[3];
    char *store; /* the engine's overlay2 data root (daemon_store.c), NULL if none */
} dmn;

/* A client for $DOCKER_HOST with the limits of o->docker_timeout (checked at open). */
int daemon_docker(const pht_image_opts *o, pht_docker **d, pht_error *err);

/* The transport's dest_tag and commit (img_transport). */
int daemon_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err);
int daemon_commit(const char *where, const img_plan *p, pht_error *err);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

struct cm_service;
struct cm_workers;

/*
 * Worker threads claim operations from the store under a lease, run them through their cluster's
 * engine and record the outcome; one heartbeat thread renews the leases of running operations and
 * notices cancel requests and lost leases.
 */
int cm_workers_start(struct cm_service *s, unsigned n, struct cm_workers **ret);
/*
 * Stops claiming; running steps get the service's grace period to finish, then are asked to stop at
 * a safe point and give their lease back (so another replica or the next start takes them over).
 * Joins every thread. Accepts NULL; returns NULL.
 */
struct cm_workers *cm_workers_stop(struct cm_workers *w);
/* Marks operation op_id cancelled if one of these workers runs it. */
void cm_workers_cancel(struct cm_workers *w, const char *op_id);

/* Retry delay before attempt `attempt + 1`: base * 2^(attempt-1), capped (pure; tested). */
uint64_t cm_backoff_usec(uint64_t base, uint64_t cap, unsigned attempt);

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

struct cm_service;
struct cm_engine_ctx;
struct cm_engine_result;

/*
 * Post-bootstrap configuration: what the service does to a cluster through its Kubernetes API once an
 * engine has built or changed it. The worker calls this after an engine's create or update step
 * succeeded, as part of the same operation: today customer access (addons/customer.h).
 *
 * Returns 0 when the cluster is configured (or there was nothing to do: an engine that stores no admin
 * kubeconfig); -ECANCELED when the operation was cancelled; otherwise a negative errno with
 * ret->message set for people and ret->retryable telling whether running the operation again may
 * succeed. ret->status_json may be replaced (the engine's status with what was configured added).
 */
int cm_addons_after_apply(struct cm_service *svc, struct cm_engine_ctx *ctx, struct cm_engine_result *ret);

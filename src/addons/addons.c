/* SPDX-License-Identifier: Apache-2.0 */
/* Post-bootstrap configuration run by the worker after an engine's create or update step. */
#include "base/common.h"

#include "addons/addons.h"
#include "addons/customer.h"

int cm_addons_after_apply(struct cm_service *svc, struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return cm_customer_access_apply(svc, ctx, ret);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Post-bootstrap configuration run by the worker after an engine's create or update step. */
#include "base/common.h"

#include "addons/addons.h"
#include "addons/customer.h"
#include "addons/reconciler.h"
#include "api/model.h"
#include "engine/engine.h"

int cm_addons_after_apply(struct cm_service *svc, struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        const struct cm_cluster *c = cm_engine_ctx_cluster(ctx);
        int r;

        r = cm_customer_access_apply(svc, ctx, ret);
        if (r < 0)
                return r;
        /* Baseline add-ons: recorded here, applied by the reconciler once the cluster is Ready. */
        r = cm_addons_install_baseline(svc, c->env, c->id);
        if (r < 0)
                cm_engine_ctx_log(ctx, "the environment's baseline add-ons could not be recorded: %s",
                                  strerror(-r));
        else
                cm_engine_ctx_log(ctx, "baseline add-ons of environment '%s' recorded for installation",
                                  c->env);
        return 0;
}

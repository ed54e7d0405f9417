/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <fcntl.h>

#include "api/json.h"
#include "base/strbuf.h"
#include "engine/engine.h"
#include "support/test_engine.h"

static void journal(const char *what, struct cm_engine_ctx *ctx) {
        const char *path = getenv("CM_TEST_ENGINE_JOURNAL");
        const struct cm_operation *op = cm_engine_ctx_operation(ctx);
        char line[256];
        int fd, n;

        if (isempty(path))
                return;
        n = cm_snprintf(line, sizeof(line), "%s %s %s %u\n", what, op->id, op->cluster_name, op->attempts);
        if (n < 0)
                return;
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        (void) !write(fd, line, (size_t) n);
        close(fd);
}

static int test_validate(const json_t *spec, struct cm_problem *p) {
        static const char *const allowed[] = { "durationMs", "failAttempts", "failPermanently",
                                               "spawnSleep", "logLines",     "failOperations",
                                               NULL };
        const json_t *t = json_object_get(spec, "test");
        const json_t *v;

        if (!t)
                return 0;
        if (!json_is_object(t)) {
                cm_problem_add(p, "spec.test", "must be an object");
                return -EINVAL;
        }
        (void) cm_json_check_fields(t, "spec.test", allowed, p);
        v = json_object_get(t, "durationMs");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 600000))
                cm_problem_add(p, "spec.test.durationMs", "must be an integer from 0 to 600000");
        v = json_object_get(t, "failAttempts");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100))
                cm_problem_add(p, "spec.test.failAttempts", "must be an integer from 0 to 100");
        v = json_object_get(t, "logLines");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000))
                cm_problem_add(p, "spec.test.logLines", "must be an integer from 0 to 100000");
        v = json_object_get(t, "failPermanently");
        if (v && !json_is_string(v))
                cm_problem_add(p, "spec.test.failPermanently", "must be a string");
        v = json_object_get(t, "failOperations");
        if (v && !json_is_array(v))
                cm_problem_add(p, "spec.test.failOperations", "must be a list of operation types");
        v = json_object_get(t, "spawnSleep");
        if (v && !json_is_boolean(v))
                cm_problem_add(p, "spec.test.spawnSleep", "must be a boolean");
        return 0;
}

static int run(struct cm_engine_ctx *ctx, struct cm_engine_result *ret, const char *verb) {
        const json_t *t = json_object_get(cm_engine_ctx_spec(ctx), "test");
        const struct cm_operation *op = cm_engine_ctx_operation(ctx);
        json_int_t duration = json_integer_value(json_object_get(t, "durationMs"));
        json_int_t fail_attempts = json_integer_value(json_object_get(t, "failAttempts"));
        json_int_t lines = json_integer_value(json_object_get(t, "logLines"));
        const char *fail = json_string_value(json_object_get(t, "failPermanently"));
        bool spawn = json_is_true(json_object_get(t, "spawnSleep"));
        int r = 0;

        journal("start", ctx);
        cm_engine_ctx_log(ctx, "test engine: %s %s (generation %" PRIi64 ")", verb, op->cluster_name,
                          op->generation);
        for (json_int_t i = 0; i < lines; i++)
                cm_engine_ctx_log(ctx, "test engine: line %lld", (long long) i);

        if (spawn) {
                char secs[32];
                char *argv[] = { CM_UNCONST(char *, "/bin/sleep"), secs, NULL };

                (void) cm_snprintf(secs, sizeof(secs), "%.3f", (double) duration / 1000.0);
                r = cm_engine_ctx_spawn(ctx, argv, NULL);
                if (r == -ECANCELED)
                        goto out;
                if (r != 0) {
                        (void) cm_snprintf(ret->message, sizeof(ret->message), "sleep exited with %d", r);
                        r = -EIO;
                        goto out;
                }
        } else {
                for (json_int_t waited = 0; waited < duration; waited += 10) {
                        if (cm_engine_ctx_cancelled(ctx)) {
                                r = -ECANCELED;
                                goto out;
                        }
                        usleep(10000);
                }
        }
        if (cm_engine_ctx_cancelled(ctx)) {
                r = -ECANCELED;
                goto out;
        }
        if (fail) {
                (void) cm_snprintf(ret->message, sizeof(ret->message), "%s", fail);
                r = -EIO;
                goto out;
        }
        {
                const json_t *fo = json_object_get(t, "failOperations"), *v;
                size_t i;

                json_array_foreach(
                        fo, i, v) if (streq(json_string_value(v) ?: "", cm_op_type_to_string(op->type))) {
                        (void) cm_snprintf(ret->message, sizeof(ret->message), "simulated %s failure",
                                           cm_op_type_to_string(op->type));
                        r = -EIO;
                        goto out;
                }
        }
        if ((json_int_t) op->attempts <= fail_attempts) {
                (void) cm_snprintf(ret->message, sizeof(ret->message),
                                   "simulated transient failure on attempt %u", op->attempts);
                ret->retryable = true;
                r = -EAGAIN;
                goto out;
        }
        if (streq(verb, "snapshot")) {
                json_t *res =
                        json_pack("{s:O}", "snapshot", json_object_get(cm_engine_ctx_params(ctx), "name"));

                ret->result_json = res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                json_decref(res);
        } else if (!streq(verb, "destroy"))
                ret->status_json = strdup("{\"endpoint\":\"https://127.0.0.1:6443\",\"nodes\":1}");
out:
        journal(r == 0 ? "end" : "fail", ctx);
        return r;
}

static int test_apply(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return run(ctx, ret, "apply");
}

static int test_destroy(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return run(ctx, ret, "destroy");
}

static int test_snapshot(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return run(ctx, ret, "snapshot");
}

static int test_restore(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return run(ctx, ret, "restore");
}

static int test_rotate(struct cm_engine_ctx *ctx, struct cm_engine_result *ret) {
        return run(ctx, ret, "rotate-certs");
}

static const struct cm_engine_ops test_engine_ops = {
        .name = "test",
        .validate = test_validate,
        .apply = test_apply,
        .destroy = test_destroy,
        .snapshot = test_snapshot,
        .restore = test_restore,
        .rotate_certificates = test_rotate,
};

void cm_test_engine_register(void) {
        (void) cm_engine_register(&test_engine_ops);
}

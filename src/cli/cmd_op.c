/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/strbuf.h"
#include "base/util.h"
#include "cli/internal.h"

/* Polls every 0.5 s for the first 10 s, then every second. */
#define WAIT_FAST_POLLS 20U
#define WAIT_FAST_USEC (500U * USEC_PER_MSEC)
#define WAIT_SLOW_USEC USEC_PER_SEC
/* The server may restart under a long wait (a new replica, an upgrade): keep trying for a minute. */
#define WAIT_MAX_FAILURES 60U
#define WAIT_LINE_MAX (64U * 1024U)
#define CLEAN_MAX 4096U

/* A cleaned copy of server text for one message; buf is reused by the next call with it. */
static const char *clean(struct strbuf *buf, const char *s) {
        strbuf_reset(buf);
        if (!s)
                return "-";
        if (cm_output_add_clean(buf, s) < 0 || !buf->buf)
                return "?";
        return buf->buf;
}

static int op_path(struct strbuf *sb, const char *id, const char *rest) {
        int r;

        if ((r = strbuf_adds(sb, "/v1/operations/")) < 0 || (r = cm_url_escape_segment(sb, id)) < 0)
                return r;
        if (rest && ((r = strbuf_addch(sb, '/')) < 0 || (r = strbuf_adds(sb, rest)) < 0))
                return r;
        return 0;
}

int cm_cli_operation_accepted(struct cm_cli *cli, json_t *op, bool wait, unsigned timeout_sec) {
        _cleanup_strbuf_ struct strbuf a = STRBUF_INIT(CLEAN_MAX), b = STRBUF_INIT(CLEAN_MAX),
                                       c = STRBUF_INIT(CLEAN_MAX);
        const char *id = cm_cli_json_str(op, "id");

        if (!json_is_object(op) || isempty(id))
                return cm_cli_error(cli, "the answer is not an operation");
        {
                /* Policy warnings admit the change; people see them at once, on standard error. */
                const json_t *warn = json_object_get(json_object_get(op, "policy"), "warn"), *w;
                size_t i;

                json_array_foreach(warn, i, w) {
                        const char *field = cm_cli_json_str(w, "field");

                        fprintf(cli->err, "warning: [%s] %s%s%s%s\n", clean(&a, cm_cli_json_str(w, "rule")),
                                clean(&b, cm_cli_json_str(w, "message")), field ? " (" : "",
                                field ? clean(&c, field) : "", field ? ")" : "");
                }
        }
        if (cli->output == CM_OUTPUT_TABLE) {
                fprintf(cli->out, "operation %s (%s) accepted for cluster %s\n", clean(&a, id),
                        clean(&b, cm_cli_json_str(op, "type")), clean(&c, cm_cli_json_str(op, "cluster")));
                fflush(cli->out);
        } else if (!wait)
                return cm_cli_print(cli, CM_RESOURCE_OPERATION, op);
        if (!wait)
                return CM_EXIT_OK;
        return cm_cli_wait_operation(cli, id, timeout_sec);
}

/* Following an operation: what was printed so far. */
struct waiter {
        struct cm_cli *cli;
        struct cm_client *client;
        const char *id;
        size_t log_offset;
        bool log_off;
        struct strbuf partial; /* the log's last line, until it is complete */
        char *state;
        char *error;
        json_int_t attempts;
};

static void waiter_done(struct waiter *w) {
        strbuf_release(&w->partial);
        free(w->state);
        free(w->error);
}

static void waiter_log(struct waiter *w, const char *data, size_t n) {
        while (n > 0) {
                const char *nl = memchr(data, '\n', n);
                size_t l = nl ? (size_t) (nl - data) : n;

                if (strbuf_add(&w->partial, data, l) < 0) {
                        /* A very long line: show what we have, then the rest as it is. */
                        fprintf(w->cli->err, "  %s", w->partial.buf ?: "");
                        fwrite(data, 1, l, w->cli->err);
                        fputc('\n', w->cli->err);
                        strbuf_reset(&w->partial);
                        if (!nl)
                                break;
                        data += l + 1;
                        n -= l + 1;
                        continue;
                }
                if (!nl)
                        break;
                fprintf(w->cli->err, "  %s\n", w->partial.buf ?: "");
                strbuf_reset(&w->partial);
                data += l + 1;
                n -= l + 1;
        }
}

static void waiter_log_flush(struct waiter *w) {
        if (w->partial.len > 0)
                fprintf(w->cli->err, "  %s\n", w->partial.buf);
        strbuf_reset(&w->partial);
        fflush(w->cli->err);
}

/* Prints the log's new part. The server may honour Range (206) or send the whole log again (200). */
static void waiter_fetch_log(struct waiter *w) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
        char range[64];
        const char *headers[2] = {};
        struct cm_client_request req = { .method = "GET", .headers = headers };
        int r;

        if (w->log_off || op_path(&path, w->id, "log") < 0)
                return;
        if (w->log_offset > 0) {
                (void) snprintf(range, sizeof(range), "Range: bytes=%zu-", w->log_offset);
                headers[0] = range;
        }
        req.path = path.buf;
        r = cm_client_perform(w->client, &req, &resp);
        if (r == -EFBIG) {
                w->log_off = true;
                fprintf(w->cli->err,
                        "(the log is too large to follow here; `clustermgmt op log %s` shows it)\n", w->id);
                return;
        }
        if (r < 0)
                return;
        if (resp.status == 206) {
                waiter_log(w, resp.body.buf, resp.body.len);
                w->log_offset += resp.body.len;
        } else if (resp.status == 200 && resp.body.len > w->log_offset) {
                waiter_log(w, resp.body.buf + w->log_offset, resp.body.len - w->log_offset);
                w->log_offset = resp.body.len;
        }
        fflush(w->cli->err);
}

static bool state_terminal(const char *s) {
        return s && (streq(s, "succeeded") || streq(s, "failed") || streq(s, "cancelled"));
}

static bool str_changed(const char *old, const char *new) {
        if (!old || !new)
                return old != new;
        return !streq(old, new);
}

static int replace_str(char **p, const char *s) {
        char *n = NULL;

        if (s) {
                n = strdup(s);
                if (!n)
                        return -ENOMEM;
        }
        free(*p);
        *p = n;
        return 0;
}

/* Prints what changed since the last poll. */
static int waiter_progress(struct waiter *w, const json_t *op) {
        _cleanup_strbuf_ struct strbuf a = STRBUF_INIT(CLEAN_MAX), b = STRBUF_INIT(CLEAN_MAX);
        const char *state = cm_cli_json_str(op, "state"), *error = cm_cli_json_str(op, "error");
        json_int_t attempts = json_integer_value(json_object_get(op, "attempts"));
        json_int_t max = json_integer_value(json_object_get(op, "maxAttempts"));
        FILE *err = w->cli->err;
        bool terminal = state_terminal(state);

        if (str_changed(w->state, state)) {
                fprintf(err, "%s: %s", w->id, clean(&a, state));
                if (state && streq(state, "running") && attempts > 0)
                        fprintf(err, " (attempt %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT ")",
                                attempts, max);
                fputc('\n', err);
        } else if (attempts != w->attempts && attempts > 0 && !terminal)
                fprintf(err, "%s: attempt %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT "\n", w->id,
                        attempts, max);
        if (!terminal && error && str_changed(w->error, error)) {
                const char *next = cm_cli_json_str(op, "nextRunAt");

                fprintf(err, "%s: attempt %" JSON_INTEGER_FORMAT " failed: %s", w->id, attempts,
                        clean(&a, error));
                if (next)
                        fprintf(err, "; next attempt at %s", clean(&b, next));
                fputc('\n', err);
        }
        fflush(err);
        w->attempts = attempts;
        if (replace_str(&w->state, state) < 0 || replace_str(&w->error, error) < 0)
                return -ENOMEM;
        return 0;
}

static int waiter_outcome(struct waiter *w, json_t *op) {
        _cleanup_strbuf_ struct strbuf a = STRBUF_INIT(CLEAN_MAX), b = STRBUF_INIT(CLEAN_MAX),
                                       c = STRBUF_INIT(CLEAN_MAX);
        struct cm_cli *cli = w->cli;
        const char *state = cm_cli_json_str(op, "state");
        const char *type = clean(&a, cm_cli_json_str(op, "type")),
                   *cluster = clean(&b, cm_cli_json_str(op, "cluster"));
        json_int_t attempts = json_integer_value(json_object_get(op, "attempts"));

        if (cli->output != CM_OUTPUT_TABLE)
                (void) cm_cli_print(cli, CM_RESOURCE_OPERATION, op);
        if (streq(state, "succeeded")) {
                if (cli->output == CM_OUTPUT_TABLE)
                        fprintf(cli->out, "operation %s (%s) succeeded for cluster %s\n", w->id, type,
                                cluster);
                return CM_EXIT_OK;
        }
        if (streq(state, "cancelled"))
                return cm_cli_error(cli, "operation %s (%s) for cluster %s was cancelled", w->id, type,
                                    cluster);
        return cm_cli_error(
                cli, "operation %s (%s) for cluster %s failed after %" JSON_INTEGER_FORMAT " attempt%s: %s",
                w->id, type, cluster, attempts, attempts == 1 ? "" : "s",
                clean(&c, cm_cli_json_str(op, "error") ?: "no error recorded"));
}

static void sleep_usec(uint64_t usec) {
        struct timespec ts = { .tv_sec = (time_t) (usec / USEC_PER_SEC),
                               .tv_nsec = (long) ((usec % USEC_PER_SEC) * 1000) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int cm_cli_wait_operation(struct cm_cli *cli, const char *id, unsigned timeout_sec) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        struct waiter w = { .cli = cli, .id = id, .attempts = -1 };
        uint64_t start = cm_mono_usec(), deadline = start + (uint64_t) timeout_sec * USEC_PER_SEC;
        unsigned polls = 0, failures = 0;
        int ret;

        strbuf_init(&w.partial, WAIT_LINE_MAX);
        w.client = cm_cli_client(cli);
        if (!w.client)
                return CM_EXIT_FAILURE;
        if (op_path(&path, id, NULL) < 0) {
                ret = cm_cli_error(cli, "the operation id is too long");
                goto out;
        }
        for (;;) {
                _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
                uint64_t now, pause;
                json_t *op;
                int r;

                r = cm_client_request(w.client, "GET", path.buf, NULL, NULL, &resp);
                if (r < 0 || resp.status >= 500) {
                        if (++failures > WAIT_MAX_FAILURES) {
                                ret = r < 0 ? cm_cli_error(cli, "%s", cm_client_last_error(w.client))
                                            : cm_cli_print_problem(cli, &resp);
                                goto out;
                        }
                        if (failures == 1)
                                cm_cli_warning(cli, "%s; still trying",
                                               r < 0 ? cm_client_last_error(w.client)
                                                     : cm_http_status_text(resp.status));
                } else if (resp.status != 200) {
                        ret = cm_cli_print_problem(cli, &resp);
                        goto out;
                } else {
                        failures = 0;
                        op = json_loadb(resp.body.buf ?: "", resp.body.len, 0, NULL);
                        if (!json_is_object(op)) {
                                json_decref(op);
                                ret = cm_cli_error(cli, "the answer to GET %s is not an operation",
                                                   path.buf);
                                goto out;
                        }
                        if (polls == 0)
                                fprintf(cli->err,
                                        "waiting for operation %s (Ctrl-C stops waiting, not the "
                                        "operation)\n",
                                        id);
                        r = waiter_progress(&w, op);
                        if (r >= 0)
                                waiter_fetch_log(&w);
                        if (r >= 0 && state_terminal(cm_cli_json_str(op, "state"))) {
                                waiter_log_flush(&w);
                                ret = waiter_outcome(&w, op);
                                json_decref(op);
                                goto out;
                        }
                        json_decref(op);
                        if (r < 0) {
                                ret = cm_cli_error(cli, "out of memory");
                                goto out;
                        }
                }
                polls++;
                now = cm_mono_usec();
                if (timeout_sec > 0 && now >= deadline) {
                        waiter_log_flush(&w);
                        cm_cli_error(cli,
                                     "timed out after %u s waiting for operation %s (%s); it goes on: "
                                     "`clustermgmt op wait %s` waits again",
                                     timeout_sec, id, w.state ?: "unknown state", id);
                        ret = CM_EXIT_TIMEOUT;
                        goto out;
                }
                pause = polls < WAIT_FAST_POLLS ? WAIT_FAST_USEC : WAIT_SLOW_USEC;
                if (timeout_sec > 0)
                        pause = MIN(pause, deadline - now);
                sleep_usec(pause);
        }
out:
        waiter_done(&w);
        return ret;
}

static int op_get(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                  int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *op = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (op_path(&path, pos[0], NULL) < 0)
                return cm_cli_error(cli, "the operation id is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &op, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(op)) {
                json_decref(op);
                return cm_cli_error(cli, "the answer is not an operation");
        }
        r = cm_cli_print(cli, CM_RESOURCE_OPERATION, op);
        json_decref(op);
        return r;
}

static int log_chunk(const char *data, size_t n, void *userdata) {
        FILE *out = userdata;

        if (fwrite(data, 1, n, out) != n || fflush(out) != 0)
                return negative_errno();
        return 0;
}

static int op_log(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                  int argc, char **argv) {
        bool follow = false;
        const struct cm_cli_opt opts[] = {
                { "follow", 'f', CM_CLI_OPT_FLAG, &follow },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
        struct cm_client *c;
        const char *pos[1];
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (op_path(&path, pos[0], follow ? "log?follow=true" : "log") < 0)
                return cm_cli_error(cli, "the operation id is too long");
        c = cm_cli_client(cli);
        if (!c)
                return CM_EXIT_FAILURE;
        if (follow)
                r = cm_client_stream(c, path.buf, NULL, log_chunk, cli->out, &resp);
        else
                r = cm_client_request(c, "GET", path.buf, NULL, NULL, &resp);
        if (r < 0)
                return cm_cli_error(cli, "%s", cm_client_last_error(c));
        if (resp.status < 200 || resp.status >= 300)
                return cm_cli_print_problem(cli, &resp);
        if (!follow && resp.body.len > 0 &&
            fwrite(resp.body.buf, 1, resp.body.len, cli->out) != resp.body.len)
                return cm_cli_error(cli, "cannot write the log: %s", strerror(errno));
        fflush(cli->out);
        return CM_EXIT_OK;
}

static int op_wait(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                   int argc, char **argv) {
        const char *timeout_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "timeout", 0, CM_CLI_OPT_STRING, &timeout_s },
        };
        const char *pos[1];
        unsigned timeout = 0;
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (timeout_s && cm_cli_parse_timeout(cli, noun, verb, timeout_s, &timeout) < 0)
                return CM_EXIT_USAGE;
        return cm_cli_wait_operation(cli, pos[0], timeout);
}

static int op_cancel(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                     int argc, char **argv) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024), a = STRBUF_INIT(CLEAN_MAX);
        const char *pos[1];
        json_t *op = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (op_path(&path, pos[0], "cancel") < 0)
                return cm_cli_error(cli, "the operation id is too long");
        if (cm_cli_call(cli, "POST", path.buf, NULL, NULL, &op, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output == CM_OUTPUT_TABLE || !json_is_object(op)) {
                fprintf(cli->out, "cancellation of operation %s requested", pos[0]);
                if (cm_cli_json_str(op, "state"))
                        fprintf(cli->out, " (it is %s)", clean(&a, cm_cli_json_str(op, "state")));
                fputc('\n', cli->out);
                r = CM_EXIT_OK;
        } else
                r = cm_cli_print(cli, CM_RESOURCE_OPERATION, op);
        json_decref(op);
        return r;
}

static const struct cm_cli_verb op_verbs[] = {
        { "get", "ID", "Show an operation: type, state, attempts, error.", op_get },
        { "log", "ID [-f|--follow]",
          "Print the operation's log; --follow streams it until the operation ends.", op_log },
        { "wait", "ID [--timeout SECONDS]",
          "Wait for the operation to end, showing progress; exit 0 succeeded, 1 failed or cancelled, 3 "
          "timed out.",
          op_wait },
        { "cancel", "ID", "Ask for the operation to be cancelled.", op_cancel },
};

const struct cm_cli_noun cm_cli_noun_op = {
        .name = "op",
        .summary = "operations: get, log, wait, cancel",
        .description = "Operations are the create, update and delete runs of clusters. They are retried "
                       "with backoff\n"
                       "and go on when the client stops waiting.",
        .verbs = op_verbs,
        .n_verbs = ELEMENTSOF(op_verbs),
};

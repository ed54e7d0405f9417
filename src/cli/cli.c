/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "cli/internal.h"
#include "cli/yaml.h"

#define TOKEN_FILE_MAX 4096U
#define PAGE_TOKEN_MAX 1024U

static const struct cm_cli_noun *const nouns[] = {
        &cm_cli_noun_env,
        &cm_cli_noun_cluster,
        &cm_cli_noun_op,
        &cm_cli_noun_events,
        &cm_cli_noun_webhook,
        &cm_cli_noun_monitoring,
        &cm_cli_noun_customer_access,
        &cm_cli_noun_addon,
        &cm_cli_noun_sshkey,
        &cm_cli_noun_secret,
        &cm_cli_noun_policy,
        &cm_cli_noun_apikey,
        &cm_cli_noun_rolebinding,
        &cm_cli_noun_audit,
        &cm_cli_noun_whoami,
        &cm_cli_noun_vault,
};

static const char global_usage[] = "usage: clustermgmt [--server URL] [--token TOKEN] [--env ENV] [-o "
                                   "table|json|yaml] [--ca-file FILE]\n"
                                   "                   <noun> <verb> [args]\n";

static void print_global_help(FILE *f) {
        fputs(global_usage, f);
        fputs("\nManage Kubernetes clusters through the CrateKube Cluster Management "
              "Service.\n\nCommands:\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(nouns); i++) {
                /* A name longer than the column gets a line of its own; its summary stays in the column. */
                if (strlen(nouns[i]->name) > 11)
                        fprintf(f, "  %s\n  %-11s %s\n", nouns[i]->name, "", nouns[i]->summary);
                else
                        fprintf(f, "  %-11s %s\n", nouns[i]->name, nouns[i]->summary);
        }
        fputs("  serve       run the service (`clustermgmt serve --help`)\n"
              "  version     print the version\n"
              "  help        this text; `clustermgmt help NOUN` or `clustermgmt NOUN --help` for a command\n"
              "\n"
              "Global flags (also accepted after the noun and verb):\n"
              "  --server URL      the service (CLUSTERMGMT_SERVER, default " CM_CLI_DEFAULT_SERVER ")\n"
              "  --token TOKEN     API token (CLUSTERMGMT_TOKEN; else $CLUSTERMGMT_DATA_DIR/admin.token or\n"
              "                    ./data/admin.token, which `clustermgmt serve` writes on first start)\n"
              "  --env ENV         environment (CLUSTERMGMT_ENV, default " CM_CLI_DEFAULT_ENV ")\n"
              "  -o, --output FMT  table (default), json or yaml\n"
              "  --ca-file FILE    CA certificates (PEM) to verify an https:// server with "
              "(CLUSTERMGMT_CA_FILE)\n"
              "  -h, --help        help\n"
              "\n"
              "Exit status: 0 success, 1 error or failed operation, 2 usage error, 3 timed out waiting.\n"
              "\n"
              "Example:\n"
              "  clustermgmt cluster create demo --engine local --nodes 3 --wait\n",
              f);
}

static void print_noun_help(FILE *f, const struct cm_cli_noun *noun) {
        if (noun->direct) {
                fprintf(f, "usage: clustermgmt %s %s [global flags]\n\n%s\n\n%s\n", noun->name,
                        noun->direct->synopsis, noun->direct->summary, noun->description);
                fputs("\nGlobal flags: see `clustermgmt help`.\n", f);
                return;
        }
        fprintf(f, "usage: clustermgmt %s <verb> [args] [global flags]\n\n%s\n\nVerbs:\n", noun->name,
                noun->description);
        for (size_t i = 0; i < noun->n_verbs; i++)
                fprintf(f, "  %s %s\n      %s\n", noun->verbs[i].name, noun->verbs[i].synopsis,
                        noun->verbs[i].summary);
        fputs("\nGlobal flags: see `clustermgmt help`.\n", f);
}

int cm_cli_error(struct cm_cli *cli, const char *fmt, ...) {
        va_list ap;

        fputs("error: ", cli->err);
        va_start(ap, fmt);
        vfprintf(cli->err, fmt, ap);
        va_end(ap);
        fputc('\n', cli->err);
        return CM_EXIT_FAILURE;
}

void cm_cli_warning(struct cm_cli *cli, const char *fmt, ...) {
        va_list ap;

        fputs("warning: ", cli->err);
        va_start(ap, fmt);
        vfprintf(cli->err, fmt, ap);
        va_end(ap);
        fputc('\n', cli->err);
}

int cm_cli_usage_error(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       const char *fmt, ...) {
        va_list ap;

        fputs("error: ", cli->err);
        va_start(ap, fmt);
        vfprintf(cli->err, fmt, ap);
        va_end(ap);
        fputc('\n', cli->err);
        if (noun && verb && verb == noun->direct)
                fprintf(cli->err, "usage: clustermgmt %s %s\n", noun->name, verb->synopsis);
        else if (noun && verb)
                fprintf(cli->err, "usage: clustermgmt %s %s %s\n", noun->name, verb->name, verb->synopsis);
        else if (!noun)
                fputs(global_usage, cli->err);
        fprintf(cli->err, "run `clustermgmt %s%s` for help\n", noun ? noun->name : "help",
                noun ? " --help" : "");
        return CM_EXIT_USAGE;
}

static const struct cm_cli_opt *find_long(const struct cm_cli_opt *opts, size_t n, const char *name,
                                          size_t len) {
        for (size_t i = 0; i < n; i++)
                if (strlen(opts[i].name) == len && strneq(opts[i].name, name, len))
                        return &opts[i];
        return NULL;
}

static const struct cm_cli_opt *find_short(const struct cm_cli_opt *opts, size_t n, char c) {
        for (size_t i = 0; i < n; i++)
                if (opts[i].short_name && opts[i].short_name == c)
                        return &opts[i];
        return NULL;
}

static int set_opt(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                   const struct cm_cli_opt *o, const char *value) {
        switch (o->kind) {
        case CM_CLI_OPT_FLAG:
                *(bool *) o->target = true;
                return 0;
        case CM_CLI_OPT_STRING:
                if (*(const char **) o->target) {
                        cm_cli_usage_error(cli, noun, verb, "flag --%s given more than once", o->name);
                        return -EINVAL;
                }
                *(const char **) o->target = value;
                return 0;
        case CM_CLI_OPT_LIST: {
                struct cm_cli_list *l = o->target;

                if (l->n >= ELEMENTSOF(l->items)) {
                        cm_cli_usage_error(cli, noun, verb, "too many --%s flags (at most %zu)", o->name,
                                           ELEMENTSOF(l->items));
                        return -EINVAL;
                }
                l->items[l->n++] = value;
                return 0;
        }
        }
        return -EINVAL;
}

int cm_cli_parse_args(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                      int argc, char **argv, const struct cm_cli_opt *opts, size_t n_opts, const char **pos,
                      size_t min_pos, size_t max_pos, size_t *ret_n_pos) {
        bool only_pos = false;
        size_t n_pos = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *value = NULL;
                const struct cm_cli_opt *o;

                if (!only_pos && streq(a, "--")) {
                        only_pos = true;
                        continue;
                }
                if (only_pos || a[0] != '-' || a[1] == 0) {
                        if (n_pos >= max_pos) {
                                cm_cli_usage_error(cli, noun, verb, "unexpected argument '%s'", a);
                                return -EINVAL;
                        }
                        pos[n_pos++] = a;
                        continue;
                }
                if (a[1] == '-') {
                        const char *eq = strchr(a + 2, '=');
                        size_t len = eq ? (size_t) (eq - a - 2) : strlen(a + 2);

                        o = find_long(opts, n_opts, a + 2, len);
                        if (!o) {
                                cm_cli_usage_error(cli, noun, verb, "unknown flag '%.*s'", (int) (len + 2),
                                                   a);
                                return -EINVAL;
                        }
                        if (eq) {
                                if (o->kind == CM_CLI_OPT_FLAG) {
                                        cm_cli_usage_error(cli, noun, verb, "flag --%s takes no value",
                                                           o->name);
                                        return -EINVAL;
                                }
                                value = eq + 1;
                        }
                } else {
                        o = find_short(opts, n_opts, a[1]);
                        if (!o) {
                                cm_cli_usage_error(cli, noun, verb, "unknown flag '%s'", a);
                                return -EINVAL;
                        }
                        if (a[2]) {
                                if (o->kind == CM_CLI_OPT_FLAG) {
                                        cm_cli_usage_error(cli, noun, verb, "unknown flag '%s'", a);
                                        return -EINVAL;
                                }
                                value = a + 2;
                        }
                }
                if (o->kind != CM_CLI_OPT_FLAG && !value) {
                        if (i + 1 >= argc) {
                                cm_cli_usage_error(cli, noun, verb, "flag --%s needs a value", o->name);
                                return -EINVAL;
                        }
                        value = argv[++i];
                }
                r = set_opt(cli, noun, verb, o, value);
                if (r < 0)
                        return r;
        }
        if (n_pos < min_pos) {
                /* Name the missing argument after the synopsis: "NAME", "ID". */
                const char *w = verb->synopsis;
                size_t l = 0;

                for (size_t k = 0; k <= n_pos && *w; k++) {
                        w += l;
                        w += strspn(w, " ");
                        l = strcspn(w, " ");
                }
                if (l > 0 && l < 32 && w[0] >= 'A' && w[0] <= 'Z')
                        cm_cli_usage_error(cli, noun, verb, "missing %.*s", (int) l, w);
                else
                        cm_cli_usage_error(cli, noun, verb, "missing argument");
                return -EINVAL;
        }
        *ret_n_pos = n_pos;
        return 0;
}

int cm_cli_parse_timeout(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                         const char *s, unsigned *ret) {
        unsigned v;

        if (safe_atou(s, &v) < 0 || v == 0 || v > 7 * 24 * 3600) {
                cm_cli_usage_error(cli, noun, verb,
                                   "--timeout takes a number of seconds (1-604800), not '%s'", s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static bool label_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
}

static bool label_word_valid(const char *s, size_t n, size_t min) {
        if (n < min || n > 63)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!label_char(s[i]))
                        return false;
        return true;
}

int cm_cli_label_parse(const char *arg, json_t *labels, const char **reason) {
        const char *eq = strchr(arg, '='), *slash, *name, *value;
        size_t key_len;

        if (!eq) {
                *reason = "expected KEY=VALUE";
                return -EINVAL;
        }
        key_len = (size_t) (eq - arg);
        value = eq + 1;
        if (key_len == 0) {
                *reason = "the key is empty";
                return -EINVAL;
        }
        if (key_len > 253) {
                *reason = "the key is longer than 253 characters";
                return -EINVAL;
        }
        slash = memchr(arg, '/', key_len);
        name = slash ? slash + 1 : arg;
        if (slash) {
                if (slash == arg) {
                        *reason = "the key's prefix before '/' is empty";
                        return -EINVAL;
                }
                for (const char *p = arg; p < slash; p++)
                        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                              (*p >= '0' && *p <= '9') || *p == '.' || *p == '-')) {
                                *reason = "the key's prefix must be a DNS subdomain (letters, digits, '.', "
                                          "'-')";
                                return -EINVAL;
                        }
        }
        if (!label_word_valid(name, (size_t) (eq - name), 1)) {
                *reason = "the key's name must be 1-63 letters, digits, '.', '_' or '-'";
                return -EINVAL;
        }
        if (!label_word_valid(value, strlen(value), 0)) {
                *reason = "the value must be 0-63 letters, digits, '.', '_' or '-'";
                return -EINVAL;
        }
        {
                _cleanup_free_ char *key = strndup(arg, key_len);

                if (!key)
                        return -ENOMEM;
                if (json_object_get(labels, key)) {
                        *reason = "the key is given more than once";
                        return -EEXIST;
                }
                if (json_object_set_new(labels, key, json_string(value)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

const char *cm_cli_json_str(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(obj, key));
}

/* Reads a token file: -ENOENT (or another errno) when it cannot be used, the token without blanks otherwise. */
static int read_token_file(const char *path, char **ret) {
        _cleanup_erase_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        r = cm_read_file(path, TOKEN_FILE_MAX, true, &buf, &len);
        if (r < 0)
                return r;
        while (len > 0 &&
               (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
                buf[--len] = 0;
        if (len == 0)
                return -ENODATA;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int resolve_token(struct cm_cli *cli, char **ret) {
        const char *env = getenv("CLUSTERMGMT_TOKEN"), *dir = getenv("CLUSTERMGMT_DATA_DIR");
        char *t;
        int r;

        if (cli->token_flag || !isempty(env)) {
                t = strdup(cli->token_flag ?: env);
                if (!t)
                        return -ENOMEM;
                *ret = t;
                return 0;
        }
        if (!isempty(dir)) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/admin.token", dir) < 0)
                        return -ENOMEM;
                r = read_token_file(path, ret);
                if (r >= 0 || r == -ENOMEM)
                        return r;
        }
        r = read_token_file("data/admin.token", ret);
        if (r >= 0 || r == -ENOMEM)
                return r;
        return -ENOKEY;
}

/* True when url's host is a loopback address, where plain HTTP does not expose the token. */
static bool url_is_loopback(const char *url) {
        static const char *const hosts[] = { "localhost", "127.", "[::1]" };
        const char *h = strstr(url, "://");

        if (!h)
                return false;
        h += 3;
        for (size_t i = 0; i < ELEMENTSOF(hosts); i++)
                if (strneq(h, hosts[i], strlen(hosts[i]))) {
                        char next = h[strlen(hosts[i])];
                        return hosts[i][strlen(hosts[i]) - 1] == '.' || next == 0 || next == ':' ||
                               next == '/';
                }
        return false;
}

struct cm_client *cm_cli_client(struct cm_cli *cli) {
        _cleanup_erase_free_ char *token = NULL;
        int r;

        if (cli->client)
                return cli->client;
        r = resolve_token(cli, &token);
        if (r == -ENOKEY) {
                cm_cli_error(
                        cli,
                        "no API token: pass --token, set CLUSTERMGMT_TOKEN, or run from the directory where "
                        "`clustermgmt serve` keeps ./data");
                return NULL;
        }
        if (r < 0) {
                cm_cli_error(cli, "cannot read the API token: %s", strerror(-r));
                return NULL;
        }
        r = cm_client_new(cli->server, token, cli->ca_file, &cli->client);
        if (r == -EINVAL) {
                cm_cli_error(cli,
                             "cannot use server '%s' with this token: the URL must start with http:// or "
                             "https:// and the token must not contain blanks or control characters",
                             cli->server);
                return NULL;
        }
        if (r < 0) {
                cm_cli_error(cli, "cannot set up the HTTP client: %s", strerror(-r));
                return NULL;
        }
        if (strneq(cli->server, "http://", 7) && !url_is_loopback(cli->server))
                cm_cli_warning(cli,
                               "sending the API token to %s over plain HTTP; use https:// off this host",
                               cli->server);
        return cli->client;
}

static void print_problem_hints(struct cm_cli *cli, const struct cm_client_problem *p) {
        if (p->status == 401)
                fputs("hint: the API token was not accepted; check --token or CLUSTERMGMT_TOKEN\n",
                      cli->err);
        else if (p->status == 403)
                fputs("hint: the API token's role does not allow this in this environment\n", cli->err);
        if (!isempty(p->operation)) {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(256);

                if (cm_output_add_clean(&sb, p->operation) >= 0)
                        fprintf(cli->err,
                                "hint: operation %s is still running; `clustermgmt op wait %s` waits for "
                                "it\n",
                                sb.buf, sb.buf);
        }
}

int cm_cli_print_problem(struct cm_cli *cli, const struct cm_client_response *resp) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(256 * 1024);
        struct cm_client_problem p = {};
        int r;

        r = cm_client_problem_decode(resp, &p);
        if (r < 0)
                return cm_cli_error(cli, "the server answered %ld %s", resp->status,
                                    cm_http_status_text(resp->status));
        r = cm_output_problem(&sb, &p);
        if (r < 0)
                cm_cli_error(cli, "the server answered %ld %s", resp->status,
                             cm_http_status_text(resp->status));
        else
                fputs(sb.buf, cli->err);
        print_problem_hints(cli, &p);
        cm_client_problem_done(&p);
        return CM_EXIT_FAILURE;
}

int cm_cli_call(struct cm_cli *cli, const char *method, const char *path, const json_t *body,
                const char *const *headers, json_t **ret_json, long *answer_status) {
        _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
        _cleanup_free_ char *text = NULL;
        struct cm_client *c;
        int r;

        c = cm_cli_client(cli);
        if (!c)
                return -ENOKEY;
        if (body) {
                text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!text) {
                        cm_cli_error(cli, "out of memory");
                        return -ENOMEM;
                }
        }
        r = cm_client_request(c, method, path, text, headers, &resp);
        if (r < 0) {
                cm_cli_error(cli, "%s", cm_client_last_error(c));
                return r;
        }
        if (answer_status)
                *answer_status = resp.status;
        if (resp.status < 200 || resp.status >= 300) {
                cm_cli_print_problem(cli, &resp);
                return -EREMOTEIO;
        }
        if (ret_json) {
                json_error_t jerr;
                json_t *v = NULL;

                if (resp.body.len > 0) {
                        v = json_loadb(resp.body.buf, resp.body.len, 0, &jerr);
                        if (!v) {
                                cm_cli_error(cli, "the answer to %s %s is not valid JSON (line %d: %s)",
                                             method, path, jerr.line, jerr.text);
                                return -EBADMSG;
                        }
                }
                *ret_json = v;
        }
        return 0;
}

int cm_cli_env_path(struct cm_cli *cli, struct strbuf *sb, const char *what, const char *name,
                    const char *rest) {
        int r;

        if ((r = strbuf_adds(sb, "/v1/environments/")) < 0 || (r = cm_url_escape_segment(sb, cli->env)) < 0)
                return r;
        if (what && ((r = strbuf_addch(sb, '/')) < 0 || (r = strbuf_adds(sb, what)) < 0))
                return r;
        if (name && ((r = strbuf_addch(sb, '/')) < 0 || (r = cm_url_escape_segment(sb, name)) < 0))
                return r;
        if (rest && ((r = strbuf_addch(sb, '/')) < 0 || (r = strbuf_adds(sb, rest)) < 0))
                return r;
        return 0;
}

static int read_stdin(char **ret, size_t *ret_len) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(CM_DOCUMENT_MAX);
        char buf[16384];
        size_t n;
        int r;

        while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
                r = strbuf_add(&sb, buf, n);
                if (r < 0)
                        return r == -ENOBUFS ? -EFBIG : r;
        }
        if (ferror(stdin))
                return -EIO;
        *ret = strbuf_detach(&sb, ret_len);
        return *ret ? 0 : -ENOMEM;
}

int cm_cli_read_document(struct cm_cli *cli, const char *what, const char *path, json_t **ret) {
        _cleanup_free_ char *data = NULL;
        struct cm_doc_error derr = {};
        char msg[512];
        size_t len = 0;
        json_t *doc = NULL;
        int r;

        if (streq(path, "-"))
                r = read_stdin(&data, &len);
        else
                r = cm_read_file(path, CM_DOCUMENT_MAX, false, &data, &len);
        if (r == -EFBIG) {
                cm_cli_error(cli, "%s is larger than %u bytes", path, CM_DOCUMENT_MAX);
                return r;
        }
        if (r < 0) {
                cm_cli_error(cli, "cannot read %s: %s", path, strerror(-r));
                return r;
        }
        r = cm_document_parse(data, len, &doc, &derr);
        if (r < 0) {
                cm_doc_error_format(&derr, msg, sizeof(msg));
                cm_cli_error(cli, "%s: %s", path, msg);
                return r;
        }
        if (!json_is_object(doc)) {
                json_decref(doc);
                cm_cli_error(cli, "%s: %s", path, what);
                return -EINVAL;
        }
        *ret = doc;
        return 0;
}

int cm_cli_send_secret(struct cm_cli *cli, const char *method, const char *path, struct strbuf *body,
                       json_t **ret_json) {
        _cleanup_(cm_client_response_done) struct cm_client_response resp = {};
        struct cm_client_request req = { .method = method, .path = path };
        struct cm_client *c = cm_cli_client(cli);
        int r;

        *ret_json = NULL;
        if (!c) {
                strbuf_release(body);
                return CM_EXIT_FAILURE;
        }
        req.body = body->buf;
        req.body_len = body->len;
        r = cm_client_perform(c, &req, &resp);
        strbuf_release(body); /* wipes the secret */
        if (r < 0)
                return cm_cli_error(cli, "%s", cm_client_last_error(c));
        if (resp.status < 200 || resp.status >= 300)
                return cm_cli_print_problem(cli, &resp);
        if (resp.body.len > 0) {
                json_t *j = json_loadb(resp.body.buf, resp.body.len, 0, NULL);

                if (json_is_object(j))
                        *ret_json = j;
                else
                        json_decref(j);
        }
        return CM_EXIT_OK;
}

int cm_cli_get_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                       int argc, char **argv, const char *collection, enum cm_resource kind) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *item = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, collection, pos[0], NULL) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "GET", path.buf, NULL, NULL, &item, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (!json_is_object(item)) {
                json_decref(item);
                return cm_cli_error(cli, "the answer is not a %s record", noun->name);
        }
        r = cm_cli_print(cli, kind, item);
        json_decref(item);
        return r;
}

int cm_cli_settings_get(struct cm_cli *cli, const char *what, const char *doc_name, struct strbuf *path,
                        json_t **ret) {
        json_t *doc = NULL;

        if (cm_cli_env_path(cli, path, what, NULL, NULL) < 0) {
                cm_cli_error(cli, "the environment name is too long");
                return -ENAMETOOLONG;
        }
        if (cm_cli_call(cli, "GET", path->buf, NULL, NULL, &doc, NULL) < 0)
                return -EREMOTEIO;
        if (doc_name && !json_is_object(doc)) {
                json_decref(doc);
                cm_cli_error(cli, "the answer is not a %s document", doc_name);
                return -EBADMSG;
        }
        *ret = doc;
        return 0;
}

int cm_cli_settings_get_command(struct cm_cli *cli, const struct cm_cli_noun *noun,
                                const struct cm_cli_verb *verb, int argc, char **argv, const char *what,
                                const char *doc_name, cm_cli_print_fn print) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        json_t *doc = NULL;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, NULL, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_settings_get(cli, what, doc_name, &path, &doc) < 0)
                return CM_EXIT_FAILURE;
        r = print(cli, doc);
        json_decref(doc);
        return r;
}

int cm_cli_settings_put(struct cm_cli *cli, const char *path, json_t *doc, cm_cli_print_fn print) {
        const json_t *version = json_object_get(doc, "version");
        const char *headers[2] = {};
        json_t *answer = NULL;
        char if_match[64];
        long status = 0;
        int r;

        if (json_is_integer(version)) {
                (void) snprintf(if_match, sizeof(if_match), "If-Match: \"%" JSON_INTEGER_FORMAT "\"",
                                json_integer_value(version));
                headers[0] = if_match;
        }
        (void) json_object_del(doc, "version");
        if (cm_cli_call(cli, "PUT", path, doc, headers, &answer, &status) < 0) {
                if (status == 412)
                        fputs("hint: the settings changed since they were read; run the command again\n",
                              cli->err);
                return CM_EXIT_FAILURE;
        }
        r = answer ? print(cli, answer) : CM_EXIT_OK;
        json_decref(answer);
        return r;
}

int cm_cli_delete_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                          int argc, char **argv, const char *collection, const char *what) {
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        size_t n_pos;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, NULL, 0, pos, 1, 1, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (cm_cli_env_path(cli, &path, collection, pos[0], NULL) < 0)
                return cm_cli_error(cli, "the name is too long");
        if (cm_cli_call(cli, "DELETE", path.buf, NULL, NULL, NULL, NULL) < 0)
                return CM_EXIT_FAILURE;
        if (cli->output == CM_OUTPUT_TABLE)
                fprintf(cli->out, "%s %s deleted\n", what, pos[0]);
        return CM_EXIT_OK;
}

int cm_cli_list_command(struct cm_cli *cli, const struct cm_cli_noun *noun, const struct cm_cli_verb *verb,
                        int argc, char **argv, const char *collection, enum cm_resource kind) {
        const char *limit_s = NULL;
        const struct cm_cli_opt opts[] = {
                { "limit", 0, CM_CLI_OPT_STRING, &limit_s },
        };
        _cleanup_strbuf_ struct strbuf path = STRBUF_INIT(1024);
        const char *pos[1];
        json_t *items = NULL;
        unsigned limit = 0;
        size_t n_pos;
        int r;

        if (cm_cli_parse_args(cli, noun, verb, argc, argv, opts, ELEMENTSOF(opts), pos, 0, 0, &n_pos) < 0)
                return CM_EXIT_USAGE;
        if (limit_s && (safe_atou(limit_s, &limit) < 0 || limit < 1 || limit > 500))
                return cm_cli_usage_error(cli, noun, verb, "--limit takes a number from 1 to 500, not '%s'",
                                          limit_s);
        if (cm_cli_env_path(cli, &path, collection, NULL, NULL) < 0)
                return cm_cli_error(cli, "the environment name is too long");
        if (cm_cli_list(cli, path.buf, limit, &items) < 0)
                return CM_EXIT_FAILURE;
        r = cm_cli_print(cli, kind, items);
        json_decref(items);
        return r;
}

int cm_cli_list(struct cm_cli *cli, const char *path, unsigned limit, json_t **ret_items) {
        _cleanup_free_ char *token = NULL;
        json_t *all;
        int r;

        all = json_array();
        if (!all)
                return -ENOMEM;
        for (;;) {
                _cleanup_strbuf_ struct strbuf url = STRBUF_INIT(8192);
                json_t *page = NULL, *items;
                const char *next;

                r = strbuf_adds(&url, path);
                if (r >= 0 && limit > 0)
                        r = strbuf_addf(&url, "?limit=%u", limit);
                if (r >= 0 && token)
                        r = strbuf_adds(&url, limit > 0 ? "&pageToken=" : "?pageToken=");
                if (r >= 0 && token)
                        r = cm_url_escape_segment(&url, token);
                if (r < 0) {
                        cm_cli_error(cli, "the request URL is too long");
                        goto fail;
                }
                r = cm_cli_call(cli, "GET", url.buf, NULL, NULL, &page, NULL);
                if (r < 0)
                        goto fail;
                items = json_object_get(page, "items");
                if (!json_is_array(items)) {
                        json_decref(page);
                        r = -EBADMSG;
                        cm_cli_error(cli, "the answer to GET %s has no \"items\" list", path);
                        goto fail;
                }
                if (json_array_size(all) + json_array_size(items) > CM_CLI_LIST_MAX) {
                        json_decref(page);
                        r = -E2BIG;
                        cm_cli_error(cli, "more than %u items; use --limit", CM_CLI_LIST_MAX);
                        goto fail;
                }
                if (json_array_extend(all, items) < 0) {
                        json_decref(page);
                        r = -ENOMEM;
                        goto fail;
                }
                next = cm_cli_json_str(page, "nextPageToken");
                if (limit > 0 || isempty(next) || strlen(next) > PAGE_TOKEN_MAX ||
                    (token && streq(token, next))) {
                        json_decref(page);
                        break;
                }
                free(token);
                token = strdup(next);
                json_decref(page);
                if (!token) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        *ret_items = all;
        return 0;
fail:
        json_decref(all);
        return r;
}

int cm_cli_print(struct cm_cli *cli, enum cm_resource kind, const json_t *v) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(CM_CLI_OUTPUT_MAX);
        int r;

        r = cm_output_render(&sb, cli->output, kind, v, cm_now_usec());
        if (r < 0)
                return cm_cli_error(cli, "cannot format the answer: %s", strerror(-r));
        fwrite(sb.buf, 1, sb.len, cli->out);
        return CM_EXIT_OK;
}

int cm_cli_print_document(struct cm_cli *cli, const json_t *v) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(CM_CLI_OUTPUT_MAX);
        int r;

        r = cm_output_render_document(&sb, cli->output == CM_OUTPUT_YAML ? CM_OUTPUT_YAML : CM_OUTPUT_JSON,
                                      v);
        if (r < 0)
                return cm_cli_error(cli, "cannot format the answer: %s", strerror(-r));
        fwrite(sb.buf, 1, sb.len, cli->out);
        return CM_EXIT_OK;
}

int cm_cli_table_print(struct cm_cli *cli, const struct cm_cli_table *t) {
        /* a row: every cell, its padding and the gap after it */
        _cleanup_strbuf_ struct strbuf line =
                STRBUF_INIT(CM_CLI_TABLE_COLUMNS_MAX * (2 * CM_CLI_CELL_MAX + 8));
        size_t n = cm_output_table_rows(&t->table);

        for (size_t row = 0; row < n; row++) {
                strbuf_reset(&line);
                if (cm_output_table_render_row(&t->table, row, &line) < 0)
                        return cm_cli_error(cli, "out of memory");
                fputs(line.buf, cli->out);
        }
        return CM_EXIT_OK;
}

/* The global flags, accepted anywhere before "--". */
struct globals {
        const char *server;
        const char *token;
        const char *env;
        const char *output;
        const char *ca_file;
        bool help;
};

static int parse_globals(struct cm_cli *cli, int argc, char **argv, struct globals *g, char **rest,
                         int *ret_n) {
        static const struct {
                const char *name;
                char short_name;
                size_t offset;
        } flags[] = {
                { "server", 0, offsetof(struct globals, server) },
                { "token", 0, offsetof(struct globals, token) },
                { "env", 0, offsetof(struct globals, env) },
                { "output", 'o', offsetof(struct globals, output) },
                { "ca-file", 0, offsetof(struct globals, ca_file) },
        };
        bool dashdash = false;
        int n = 0;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *value = NULL;
                bool matched = false;

                if (dashdash || a[0] != '-') {
                        rest[n++] = argv[i];
                        continue;
                }
                if (streq(a, "--")) {
                        dashdash = true;
                        rest[n++] = argv[i];
                        continue;
                }
                if (streq(a, "-h") || streq(a, "--help")) {
                        g->help = true;
                        continue;
                }
                for (size_t f = 0; f < ELEMENTSOF(flags) && !matched; f++) {
                        size_t l = strlen(flags[f].name);

                        if (a[1] == '-' && strneq(a + 2, flags[f].name, l) &&
                            (a[2 + l] == 0 || a[2 + l] == '=')) {
                                matched = true;
                                if (a[2 + l] == '=')
                                        value = a + 3 + l;
                        } else if (flags[f].short_name && a[1] == flags[f].short_name) {
                                matched = true;
                                if (a[2])
                                        value = a + 2;
                        }
                        if (!matched)
                                continue;
                        if (!value) {
                                if (i + 1 >= argc)
                                        return cm_cli_usage_error(cli, NULL, NULL, "flag --%s needs a value",
                                                                  flags[f].name);
                                value = argv[++i];
                        }
                        *(const char **) ((char *) g + flags[f].offset) = value;
                }
                if (!matched)
                        rest[n++] = argv[i];
        }
        *ret_n = n;
        return 0;
}

static const struct cm_cli_noun *find_noun(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(nouns); i++)
                if (streq(nouns[i]->name, name))
                        return nouns[i];
        return NULL;
}

int cm_cli_run(FILE *out, FILE *err, int argc, char *argv[]) {
        struct cm_cli cli = { .out = out, .err = err };
        _cleanup_free_ char **rest = NULL;
        struct globals g = {};
        const struct cm_cli_noun *noun;
        const struct cm_cli_verb *verb = NULL;
        int n = 0, r;

        rest = new0(char *, (size_t) MAX(argc, 1) + 1);
        if (!rest)
                return cm_cli_error(&cli, "out of memory");
        r = parse_globals(&cli, argc, argv, &g, rest, &n);
        if (r != 0)
                return r;

        if (g.output && cm_output_format_from_string(g.output, &cli.output) < 0)
                return cm_cli_usage_error(&cli, NULL, NULL,
                                          "unknown output format '%s': use table, json or yaml", g.output);
        cli.server = g.server ?: getenv("CLUSTERMGMT_SERVER");
        if (isempty(cli.server))
                cli.server = CM_CLI_DEFAULT_SERVER;
        if (!strneq(cli.server, "http://", 7) && !strneq(cli.server, "https://", 8))
                return cm_cli_usage_error(&cli, NULL, NULL,
                                          "the server URL '%s' must start with http:// or https://",
                                          cli.server);
        cli.env = g.env ?: getenv("CLUSTERMGMT_ENV");
        if (isempty(cli.env))
                cli.env = CM_CLI_DEFAULT_ENV;
        cli.token_flag = g.token;
        cli.ca_file = g.ca_file ?: getenv("CLUSTERMGMT_CA_FILE");

        if (n == 0) {
                if (g.help) {
                        print_global_help(out);
                        return CM_EXIT_OK;
                }
                fputs(global_usage, err);
                fputs("run `clustermgmt help` for the commands\n", err);
                return CM_EXIT_USAGE;
        }
        if (streq(rest[0], "help")) {
                if (n < 2) {
                        print_global_help(out);
                        return CM_EXIT_OK;
                }
                noun = find_noun(rest[1]);
                if (!noun)
                        return cm_cli_usage_error(&cli, NULL, NULL, "unknown command '%s'", rest[1]);
                print_noun_help(out, noun);
                return CM_EXIT_OK;
        }
        noun = find_noun(rest[0]);
        if (!noun)
                return cm_cli_usage_error(&cli, NULL, NULL, "unknown command '%s'", rest[0]);
        if (g.help || (n >= 2 && streq(rest[1], "help"))) {
                print_noun_help(out, noun);
                return CM_EXIT_OK;
        }
        if (noun->direct) {
                r = noun->direct->run(&cli, noun, noun->direct, n, rest);
                fflush(out);
                cli.client = cm_client_free(cli.client);
                return r;
        }
        if (n < 2) {
                fprintf(err, "error: missing verb: clustermgmt %s <verb>, with <verb> one of:", noun->name);
                for (size_t i = 0; i < noun->n_verbs; i++)
                        fprintf(err, " %s", noun->verbs[i].name);
                fprintf(err, "\nrun `clustermgmt %s --help` for help\n", noun->name);
                return CM_EXIT_USAGE;
        }
        for (size_t i = 0; i < noun->n_verbs; i++)
                if (streq(noun->verbs[i].name, rest[1]))
                        verb = &noun->verbs[i];
        if (!verb)
                return cm_cli_usage_error(&cli, noun, NULL, "unknown verb '%s' for %s", rest[1], noun->name);

        r = verb->run(&cli, noun, verb, n - 1, rest + 1);
        fflush(out);
        cli.client = cm_client_free(cli.client);
        return r;
}

int cm_cli_main(int argc, char *argv[]) {
        return cm_cli_run(stdout, stderr, argc, argv);
}

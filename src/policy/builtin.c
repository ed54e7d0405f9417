/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The built-in rules (docs/policy.md) and their evaluator. The evaluator reads nothing but the policy
 * input and trusts none of its types: a member of the wrong type counts as absent, a parameter the
 * evaluator cannot use falls back to its default. policy/cratekube/rules.rego is the same table in
 * Rego and must decide alike over any input: when a rule or a message changes here, it changes there
 * (tests/integration/test_policy_rego.py compares both).
 */
#include "base/common.h"

#include "api/json.h"
#include "base/strbuf.h"
#include "policy/policy.h"
#include "policy/policy_internal.h"

/* Lists in messages show this many entries, then "and N more". */
#define LIST_SHOWN 32
/* A message longer than this (only absurd inputs get there) fails the evaluation. */
#define MESSAGE_MAX (4U * 1024U * 1024U)
/* rke's own default when etcdSnapshots.retentionHours is not given. */
#define RKE_DEFAULT_RETENTION_HOURS 72

/* What the rules need of one rke node, read once per evaluation. */
struct node_fact {
        const char *address; /* NULL unless a string */
        bool etcd;
};

#define NODE_FACTS_STACK 128

struct cm_policy__eval {
        const json_t *input;
        const json_t *rules; /* input.settings.rules */
        const json_t *spec; /* input.cluster.spec */
        const char *engine; /* spec.engine when it is a string */
        const json_t *rke; /* spec.rke */
        const json_t *nodes; /* spec.rke.nodes when an array, else NULL */
        size_t n_nodes;
        struct node_fact *facts; /* n_nodes of them */
        long long etcd_nodes;
        json_t *deny, *warn;
        /* The rule being evaluated, its settings, and the list its violations go to. */
        const struct cm_policy__rule *rule;
        const json_t *settings;
        json_t *out;
};

void cm_policy_decision_done(struct cm_policy_decision *d) {
        if (!d)
                return;
        json_decref(d->deny);
        json_decref(d->warn);
        *d = (struct cm_policy_decision){};
}

/* --- Values --- */

bool cm_policy__count_value(const json_t *v, long long *ret) {
        long long n;

        if (json_is_integer(v))
                n = json_integer_value(v);
        else if (json_is_real(v)) {
                double d = json_real_value(v);

                if (!(d >= 0 && d <= (double) CM_POLICY__COUNT_MAX) || (double) (long long) d != d)
                        return false;
                n = (long long) d;
        } else
                return false;
        if (n < 0 || n > CM_POLICY__COUNT_MAX)
                return false;
        if (ret)
                *ret = n;
        return true;
}

static bool all_strings(const json_t *v, bool object) {
        const char *k;
        json_t *x;
        size_t i;

        if (object) {
                if (!json_is_object(v))
                        return false;
                json_object_foreach(CM_UNCONST(json_t *, v), k, x) {
                        if (!json_is_string(x))
                                return false;
                }
                return true;
        }
        if (!json_is_array(v))
                return false;
        json_array_foreach(v, i, x) {
                if (!json_is_string(x))
                        return false;
        }
        return true;
}

bool cm_policy__param_usable(const struct cm_policy__param *pd, const json_t *v) {
        switch (pd->kind) {
        case CM_POLICY__COUNT:
                return cm_policy__count_value(v, NULL);
        case CM_POLICY__VERSION:
                return json_is_string(v);
        case CM_POLICY__LABELS:
                return all_strings(v, true);
        case CM_POLICY__CIDRS:
        case CM_POLICY__LABEL_KEYS:
        case CM_POLICY__ENGINES:
                return all_strings(v, false);
        }
        return false;
}

json_t *cm_policy__param_default(const struct cm_policy__param *pd) {
        json_t *o;

        switch (pd->kind) {
        case CM_POLICY__COUNT:
                return json_integer(pd->def_count);
        case CM_POLICY__VERSION:
                return json_string(pd->def_string ?: "");
        case CM_POLICY__LABELS:
                o = json_object();
                for (const char *const *kv = pd->def_pairs; o && kv && kv[0]; kv += 2)
                        if (json_object_set_new(o, kv[0], json_string(kv[1])) < 0) {
                                json_decref(o);
                                return NULL;
                        }
                return o;
        case CM_POLICY__CIDRS:
        case CM_POLICY__LABEL_KEYS:
        case CM_POLICY__ENGINES:
                return json_array();
        }
        return NULL;
}

/* The parameter's value from the rule's settings, or NULL when it is absent or unusable. */
static const json_t *param_raw(const struct cm_policy__eval *e, const char *name) {
        const struct cm_policy__param *pd = cm_policy__param_find(e->rule, name);
        const json_t *v = json_object_get(json_object_get(e->settings, "params"), name);

        return pd && v && cm_policy__param_usable(pd, v) ? v : NULL;
}

static long long param_count(const struct cm_policy__eval *e, const char *name) {
        const struct cm_policy__param *pd = cm_policy__param_find(e->rule, name);
        long long n;

        if (cm_policy__count_value(param_raw(e, name), &n))
                return n;
        return pd ? pd->def_count : 0;
}

static const char *param_string(const struct cm_policy__eval *e, const char *name) {
        const struct cm_policy__param *pd = cm_policy__param_find(e->rule, name);
        const char *s = json_string_value(param_raw(e, name));

        return s ?: pd && pd->def_string ? pd->def_string : "";
}

/* A list parameter: all lists default to [], given here as NULL (json_array_size(NULL) is 0). */
static const json_t *param_list(const struct cm_policy__eval *e, const char *name) {
        return param_raw(e, name);
}

/* --- Violations --- */

_printf_(3, 4) static int emit(struct cm_policy__eval *e, const char *field, const char *fmt, ...) {
        json_t *msg, *v;
        va_list ap;

        va_start(ap, fmt);
        msg = json_vsprintf(fmt, ap);
        va_end(ap);
        if (!msg)
                return -ENOMEM;
        v = json_pack("{s:s, s:s}", "rule", e->rule->id, "field", field);
        if (!v) {
                json_decref(msg);
                return -ENOMEM;
        }
        if (json_object_set_new(v, "message", msg) < 0) {
                json_decref(v);
                return -ENOMEM;
        }
        return json_array_append_new(e->out, v) < 0 ? -ENOMEM : 0;
}

/* "a, b, c" of the strings in list (other members skipped), at most LIST_SHOWN, then " and N more". */
static int list_text(const json_t *list, char **ret, size_t *ret_count) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(MESSAGE_MAX);
        size_t i, shown = 0, total = 0;
        json_t *x;
        char *s;
        int r = 0;

        json_array_foreach(list, i, x) {
                if (!json_is_string(x))
                        continue;
                if (total++ >= LIST_SHOWN)
                        continue;
                if (shown++ > 0)
                        r = strbuf_addl(&sb, ", ");
                if (r >= 0)
                        r = strbuf_add(&sb, json_string_value(x), json_string_length(x));
                if (r < 0)
                        return -ENOMEM;
        }
        if (total > LIST_SHOWN && strbuf_addf(&sb, " and %zu more", total - LIST_SHOWN) < 0)
                return -ENOMEM;
        s = strbuf_detach(&sb, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        if (ret_count)
                *ret_count = total;
        return 0;
}

/* --- Facts about the spec --- */

static bool node_has_etcd(const json_t *node) {
        const json_t *roles = json_object_get(node, "roles"), *x;
        size_t i;

        json_array_foreach(roles, i, x) {
                if (json_is_string(x) && streq(json_string_value(x), "etcd"))
                        return true;
        }
        return false;
}

static const char *node_address(const json_t *node) {
        return json_string_value(json_object_get(node, "address"));
}

static void read_nodes(struct cm_policy__eval *e) {
        size_t i;
        json_t *node;

        e->etcd_nodes = 0;
        json_array_foreach(e->nodes, i, node) {
                e->facts[i] =
                        (struct node_fact){ .address = node_address(node), .etcd = node_has_etcd(node) };
                e->etcd_nodes += e->facts[i].etcd;
        }
}

static bool is_engine(const struct cm_policy__eval *e, const char *name) {
        return e->engine && streq(e->engine, name);
}

/* The engine's name for messages: input.engine.name, else spec.engine. */
static const char *engine_name(const struct cm_policy__eval *e) {
        const char *s = json_string_value(json_object_get(json_object_get(e->input, "engine"), "name"));

        return s ?: e->engine ?: "unknown";
}

/* --- The rules --- */

static int check_etcd_snapshots(struct cm_policy__eval *e) {
        const json_t *snap = json_object_get(e->rke, "etcdSnapshots"),
                     *hours = json_object_get(snap, "retentionHours");
        long long min, h;

        if (!is_engine(e, "rke"))
                return 0;
        if (json_is_false(json_object_get(snap, "enabled")))
                return emit(
                        e, "spec.rke.etcdSnapshots.enabled",
                        "etcd snapshots must stay enabled: without them a failed etcd cannot be restored; "
                        "set spec.rke.etcdSnapshots.enabled to true or leave it out");
        min = param_count(e, "minRetentionHours");
        if (min <= 0)
                return 0;
        if (!hours) {
                if (RKE_DEFAULT_RETENTION_HOURS >= min)
                        return 0;
                return emit(e, "spec.rke.etcdSnapshots.retentionHours",
                            "etcd snapshots must be kept for at least %lld hours in this environment; set "
                            "spec.rke.etcdSnapshots.retentionHours to %lld or more (the default is %d)",
                            min, min, RKE_DEFAULT_RETENTION_HOURS);
        }
        if (!cm_policy__count_value(hours, &h) || h >= min)
                return 0;
        return emit(e, "spec.rke.etcdSnapshots.retentionHours",
                    "etcd snapshots must be kept for at least %lld hours in this environment; set "
                    "spec.rke.etcdSnapshots.retentionHours to %lld or more (it is %lld)",
                    min, min, h);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * "clusters in environments labelled a=1,b=2" (the pairs as "key=value", sorted bytewise), or
 * "clusters in this environment" when there are none.
 */
static int subject_text(const json_t *want, char **ret) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(MESSAGE_MAX);
        size_t n = json_object_size(want), i = 0;
        _cleanup_free_ char **pairs = NULL;
        const char *k;
        json_t *v;
        char *s;
        int r = 0;

        if (n == 0) {
                s = strdup("clusters in this environment");
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        pairs = new0(char *, n);
        if (!pairs)
                return -ENOMEM;
        json_object_foreach(CM_UNCONST(json_t *, want), k, v) {
                if (i >= n || asprintf(&pairs[i], "%s=%s", k, json_string_value(v) ?: "") < 0) {
                        r = -ENOMEM;
                        break;
                }
                i++;
        }
        if (r >= 0) {
                qsort(pairs, i, sizeof(pairs[0]), cmp_str);
                r = strbuf_addl(&sb, "clusters in environments labelled ");
                for (size_t j = 0; r >= 0 && j < i; j++) {
                        if (j > 0)
                                r = strbuf_addch(&sb, ',');
                        if (r >= 0)
                                r = strbuf_adds(&sb, pairs[j]);
                }
        }
        for (size_t j = 0; j < i; j++)
                free(pairs[j]);
        if (r < 0)
                return -ENOMEM;
        s = strbuf_detach(&sb, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool labels_match(const json_t *have, const json_t *want) {
        const char *k;
        json_t *v;

        json_object_foreach(CM_UNCONST(json_t *, want), k, v) {
                const char *h = json_string_value(json_object_get(have, k));

                if (!h || !json_is_string(v) || !streq(h, json_string_value(v)))
                        return false;
        }
        return true;
}

static int check_production_quorum(struct cm_policy__eval *e) {
        const json_t *env_labels = json_object_get(json_object_get(e->input, "environment"), "labels");
        const json_t *want = param_raw(e, "environmentLabels");
        _cleanup_free_ char *subject = NULL;
        json_t *owned = NULL;
        long long min, have = 0;
        int r;

        if (!is_engine(e, "rke") && !is_engine(e, "local"))
                return 0;
        if (!want) {
                want = owned = cm_policy__param_default(cm_policy__param_find(e->rule, "environmentLabels"));
                if (!owned)
                        return -ENOMEM;
        }
        /* Labels that are not an object count as none: only an empty environmentLabels matches. */
        if (!labels_match(env_labels, want)) {
                json_decref(owned);
                return 0;
        }
        r = subject_text(want, &subject);
        json_decref(owned);
        if (r < 0)
                return r;
        if (is_engine(e, "local"))
                return emit(
                        e, "spec.engine",
                        "%s must use engine rke: local clusters run on the service's own machine and are "
                        "meant for development",
                        subject);
        min = param_count(e, "minEtcdNodes");
        have = e->etcd_nodes;
        if (have >= min)
                return 0;
        return emit(e, "spec.rke.nodes",
                    "%s need at least %lld etcd nodes so that etcd keeps its quorum when a node fails; this "
                    "cluster has %lld: give more nodes the etcd role",
                    subject, min, have);
}

static int check_supported_version(struct cm_policy__eval *e) {
        const json_t *eng = json_object_get(e->input, "engine"),
                     *versions = json_object_get(eng, "versions");
        const char *version = json_string_value(json_object_get(e->spec, "kubernetesVersion"));
        const char *def = json_string_value(json_object_get(eng, "default"));
        const char *minimum = param_string(e, "minimum");
        uint32_t vmin[3], v[3];
        int r;

        if (!isempty(version) && json_is_array(versions)) {
                bool found = false;
                size_t i;
                json_t *x;

                json_array_foreach(versions, i, x) {
                        if (json_is_string(x) && streq(json_string_value(x), version)) {
                                found = true;
                                break;
                        }
                }
                if (!found) {
                        _cleanup_free_ char *list = NULL;
                        size_t count;

                        r = list_text(versions, &list, &count);
                        if (r < 0)
                                return r;
                        if (count == 0)
                                r = emit(e, "spec.kubernetesVersion",
                                         "Kubernetes version %s is not supported by engine %s, which "
                                         "lists no versions; leave kubernetesVersion empty for the "
                                         "engine's default",
                                         version, engine_name(e));
                        else
                                r = emit(e, "spec.kubernetesVersion",
                                         "Kubernetes version %s is not supported by engine %s; use one "
                                         "of %s, or leave kubernetesVersion empty for the engine's "
                                         "default",
                                         version, engine_name(e), list);
                        if (r < 0)
                                return r;
                }
        }

        if (isempty(minimum) || !cm_policy__version_parse(minimum, vmin))
                return 0;
        if (!isempty(version)) {
                if (!cm_policy__version_parse(version, v))
                        return emit(e, "spec.kubernetesVersion",
                                    "Kubernetes version %s cannot be compared with %s, the oldest this "
                                    "environment allows; use a version like v1.32.7-rancher1-1",
                                    version, minimum);
                if (cm_policy__version_cmp(v, vmin) >= 0)
                        return 0;
                return emit(e, "spec.kubernetesVersion",
                            "Kubernetes version %s is older than %s, the oldest this environment allows; "
                            "choose %s or newer",
                            version, minimum, minimum);
        }
        if (isempty(def) || !cm_policy__version_parse(def, v) || cm_policy__version_cmp(v, vmin) >= 0)
                return 0;
        return emit(e, "spec.kubernetesVersion",
                    "the default Kubernetes version of engine %s (%s) is older than %s, the oldest this "
                    "environment allows; set kubernetesVersion to %s or newer",
                    engine_name(e), def, minimum, minimum);
}

static int check_node_cidrs(struct cm_policy__eval *e) {
        const json_t *cidrs = param_list(e, "cidrs");
        struct cm_policy__net stack[16], *nets = stack;
        _cleanup_free_ struct cm_policy__net *heap = NULL;
        _cleanup_free_ char *list = NULL;
        size_t n = json_array_size(cidrs), usable = 0, i;
        json_t *x;
        int r = 0;

        if (!is_engine(e, "rke") || n == 0 || e->n_nodes == 0)
                return 0;
        if (n > ELEMENTSOF(stack)) {
                nets = heap = new0(struct cm_policy__net, n);
                if (!heap)
                        return -ENOMEM;
        }
        /* Entries that are not networks contain nothing (OPA's net.cidr_contains fails on them). */
        json_array_foreach(cidrs, i, x) {
                if (cm_policy__net_parse(json_string_value(x), &nets[usable]))
                        usable++;
        }

        for (i = 0; i < e->n_nodes; i++) {
                const char *a = e->facts[i].address;
                struct cm_policy__ip ip;
                bool inside = false;
                char field[64];

                if (!a)
                        continue;
                if (cm_policy__ip_parse(a, &ip))
                        for (size_t k = 0; k < usable && !inside; k++)
                                inside = cm_policy__net_contains(&nets[k], &ip);
                if (inside)
                        continue;
                if (!list) {
                        r = list_text(cidrs, &list, NULL);
                        if (r < 0)
                                return r;
                }
                (void) cm_snprintf(field, sizeof(field), "spec.rke.nodes[%zu].address", i);
                r = emit(e, field,
                         "node address %s must be an IP address within %s, the networks this "
                         "environment allows",
                         a, list);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint32_t hash_lower(const char *s) {
        uint32_t h = 2166136261U;

        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32U : c)) * 16777619U;
        }
        return h;
}

/* ASCII-only case folding, as in the Rego bundle (strings.replace_n of A-Z). */
static bool eq_lower(const char *a, const char *b) {
        for (;; a++, b++) {
                unsigned char x = (unsigned char) *a, y = (unsigned char) *b;

                if (x >= 'A' && x <= 'Z')
                        x += 32;
                if (y >= 'A' && y <= 'Z')
                        y += 32;
                if (x != y)
                        return false;
                if (x == 0)
                        return true;
        }
}

struct slot {
        uint32_t hash;
        uint32_t node; /* index + 1, 0 for a free slot */
};

static int check_unique_addresses(struct cm_policy__eval *e) {
        size_t n = e->n_nodes, size = 16, i;
        struct slot stack[256], *slots = stack;
        _cleanup_free_ struct slot *heap = NULL;

        if (!is_engine(e, "rke") || n < 2)
                return 0;
        while (size < 2 * n) {
                if (size > SIZE_MAX / 4 || size >= UINT32_MAX / 2)
                        return -ENOMEM;
                size *= 2;
        }
        if (size > ELEMENTSOF(stack)) {
                slots = heap = new0(struct slot, size);
                if (!heap)
                        return -ENOMEM;
        } else
                memset(stack, 0, size * sizeof(stack[0]));

        /* Open addressing: each address (letter case aside) keeps the first node that has it. */
        for (i = 0; i < n; i++) {
                const char *a = e->facts[i].address;
                uint32_t h;
                size_t k;

                if (!a)
                        continue;
                h = hash_lower(a);
                for (k = h & (size - 1); slots[k].node != 0; k = (k + 1) & (size - 1))
                        if (slots[k].hash == h && eq_lower(a, e->facts[slots[k].node - 1].address))
                                break;
                if (slots[k].node == 0) {
                        slots[k] = (struct slot){ .hash = h, .node = (uint32_t) i + 1 };
                        continue;
                }
                {
                        char field[64];
                        int r;

                        (void) cm_snprintf(field, sizeof(field), "spec.rke.nodes[%zu].address", i);
                        r = emit(e, field,
                                 "node address %s is also the address of spec.rke.nodes[%zu]; each machine "
                                 "can be a node of a cluster once",
                                 a, (size_t) slots[k].node - 1);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int check_odd_etcd(struct cm_policy__eval *e) {
        long long n;

        if (!is_engine(e, "rke"))
                return 0;
        n = e->etcd_nodes;
        if (n < 2 || n % 2 != 0)
                return 0;
        return emit(e, "spec.rke.nodes",
                    "%lld etcd nodes tolerate no more failures than %lld would: use an odd number of etcd "
                    "nodes, like 3 or 5",
                    n, n - 1);
}

static int check_required_labels(struct cm_policy__eval *e) {
        const json_t *keys = param_list(e, "keys");
        const json_t *labels = json_object_get(json_object_get(e->input, "cluster"), "labels");
        size_t i;
        json_t *k;

        json_array_foreach(keys, i, k) {
                const char *key = json_string_value(k);
                bool seen = false;
                char *field;
                int r;

                for (size_t j = 0; j < i && !seen; j++)
                        seen = json_equal(k, json_array_get(keys, j));
                if (seen || json_object_get(labels, key))
                        continue;
                if (asprintf(&field, "labels.%s", key) < 0)
                        return -ENOMEM;
                r = emit(e, field,
                         "this environment requires the label %s on every cluster; add it to the "
                         "cluster's labels",
                         key);
                free(field);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_max_nodes(struct cm_policy__eval *e) {
        long long max = param_count(e, "max"), n;
        const char *field;

        if (is_engine(e, "rke")) {
                n = (long long) e->n_nodes;
                field = "spec.rke.nodes";
        } else if (is_engine(e, "local")) {
                /* The local engine's own reading: absent or unusable is 1 node. */
                if (!cm_policy__count_value(json_object_get(json_object_get(e->spec, "local"), "nodes"), &n))
                        n = 1;
                field = "spec.local.nodes";
        } else
                return 0;
        if (n <= max)
                return 0;
        return emit(e, field, "this cluster has %lld nodes; this environment allows at most %lld", n, max);
}

static int check_allowed_engines(struct cm_policy__eval *e) {
        const json_t *engines = param_list(e, "engines"), *x;
        _cleanup_free_ char *list = NULL;
        size_t i;
        int r;

        if (!e->engine || json_array_size(engines) == 0)
                return 0;
        json_array_foreach(engines, i, x) {
                if (streq(json_string_value(x), e->engine))
                        return 0;
        }
        r = list_text(engines, &list, NULL);
        if (r < 0)
                return r;
        return emit(e, "spec.engine",
                    "engine %s is not allowed in this environment; the allowed engines are %s", e->engine,
                    list);
}

/* --- The table --- */

static const char *const production_labels[] = { "tier", "production", NULL };

static const struct cm_policy__param etcd_snapshots_params[] = {
        { .name = "minRetentionHours", .kind = CM_POLICY__COUNT, .min = 0, .max = 8760, .def_count = 0 },
        {},
};
static const struct cm_policy__param production_quorum_params[] = {
        { .name = "environmentLabels", .kind = CM_POLICY__LABELS, .def_pairs = production_labels },
        { .name = "minEtcdNodes", .kind = CM_POLICY__COUNT, .min = 1, .max = 99, .def_count = 3 },
        {},
};
static const struct cm_policy__param supported_version_params[] = {
        { .name = "minimum", .kind = CM_POLICY__VERSION, .def_string = "" },
        {},
};
static const struct cm_policy__param node_cidrs_params[] = {
        { .name = "cidrs", .kind = CM_POLICY__CIDRS, .max = 64 },
        {},
};
static const struct cm_policy__param required_labels_params[] = {
        { .name = "keys", .kind = CM_POLICY__LABEL_KEYS, .max = 64 },
        {},
};
static const struct cm_policy__param max_nodes_params[] = {
        { .name = "max", .kind = CM_POLICY__COUNT, .min = 1, .max = 100000, .def_count = 100 },
        {},
};
static const struct cm_policy__param allowed_engines_params[] = {
        { .name = "engines", .kind = CM_POLICY__ENGINES, .max = 16 },
        {},
};

const struct cm_policy__rule cm_policy__rules[] = {
        { "etcd-snapshots", true, true,
          "rke clusters keep etcd snapshots on (spec.rke.etcdSnapshots.enabled is not false), kept for at "
          "least minRetentionHours when that is above 0 (rke's default is 72 hours)",
          etcd_snapshots_params, check_etcd_snapshots },
        { "production-etcd-quorum", true, true,
          "in environments whose labels include every pair of environmentLabels, rke clusters have at least "
          "minEtcdNodes etcd nodes, and local clusters are refused",
          production_quorum_params, check_production_quorum },
        { "supported-version", true, true,
          "spec.kubernetesVersion, when set, is one the engine supports; when minimum is set, neither "
          "it nor the engine's default (when it is empty) is older",
          supported_version_params, check_supported_version },
        { "node-cidrs", true, true,
          "when cidrs is not empty, every rke node address is an IP address within one of them",
          node_cidrs_params, check_node_cidrs },
        { "unique-node-addresses", true, true, "no two rke nodes have the same address (letter case aside)",
          NULL, check_unique_addresses },
        { "odd-etcd-count", false, true,
          "rke clusters have an odd number of etcd nodes: an even number tolerates no more failures than "
          "one fewer",
          NULL, check_odd_etcd },
        { "required-labels", true, true, "every label key in keys is set on the cluster",
          required_labels_params, check_required_labels },
        { "max-nodes", true, true, "a cluster has at most max nodes (the rke nodes, or spec.local.nodes)",
          max_nodes_params, check_max_nodes },
        { "allowed-engines", true, true, "when engines is not empty, the cluster's engine is one of them",
          allowed_engines_params, check_allowed_engines },
        {},
};

const struct cm_policy__rule *cm_policy__rule_find(const char *id) {
        for (const struct cm_policy__rule *r = cm_policy__rules; id && r->id; r++)
                if (streq(r->id, id))
                        return r;
        return NULL;
}

const struct cm_policy__param *cm_policy__param_find(const struct cm_policy__rule *r, const char *name) {
        for (const struct cm_policy__param *pd = r ? r->params : NULL; name && pd && pd->name; pd++)
                if (streq(pd->name, name))
                        return pd;
        return NULL;
}

/* {"<param>": default, ...} of a rule. */
static json_t *rule_params_default(const struct cm_policy__rule *r) {
        json_t *o = json_object();

        for (const struct cm_policy__param *pd = r->params; o && pd && pd->name; pd++)
                if (json_object_set_new(o, pd->name, cm_policy__param_default(pd)) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}

json_t *cm_policy_catalogue(void) {
        json_t *list = json_array();

        for (const struct cm_policy__rule *r = cm_policy__rules; list && r->id; r++) {
                json_t *params = rule_params_default(r), *row;

                if (!params) {
                        json_decref(list);
                        return NULL;
                }
                row = json_pack("{s:s, s:s, s:s, s:o, s:b}", "id", r->id, "effect",
                                r->deny ? "deny" : "warn", "description", r->description, "params", params,
                                "enabled", r->enabled);
                if (json_array_append_new(list, row) < 0) {
                        json_decref(list);
                        return NULL;
                }
        }
        return list;
}

/* --- Input and evaluation --- */

static json_t *ref_or(const json_t *v, json_t *(*make)(void) ) {
        return v ? json_incref(CM_UNCONST(json_t *, v)) : make();
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

json_t *cm_policy_input_build(const char *operation, const char *principal, const char *env,
                              const json_t *env_labels, const char *cluster, const json_t *labels,
                              const json_t *spec, const char *engine, const json_t *versions,
                              const char *default_version, const json_t *effective_settings) {
        json_t *settings = effective_settings ? json_incref(CM_UNCONST(json_t *, effective_settings))
                                              : cm_policy_settings_effective(NULL);

        if (!settings)
                return NULL;
        /* "o" steals each new reference; json_pack releases them when it fails. */
        return json_pack("{s:o, s:o, s:{s:o, s:o}, s:{s:o, s:o, s:o}, s:{s:o, s:o, s:o}, s:o}", "operation",
                         string_or_null(operation), "principal", string_or_null(principal), "environment",
                         "name", string_or_null(env), "labels", ref_or(env_labels, json_object), "cluster",
                         "name", string_or_null(cluster), "labels", ref_or(labels, json_object), "spec",
                         ref_or(spec, json_null), "engine", "name", string_or_null(engine), "versions",
                         ref_or(versions, json_null), "default", string_or_null(default_version), "settings",
                         settings);
}

static bool effect_is_deny(const struct cm_policy__rule *r, const json_t *settings) {
        const char *s = json_string_value(json_object_get(settings, "effect"));

        if (s && streq(s, "deny"))
                return true;
        if (s && streq(s, "warn"))
                return false;
        return r->deny;
}

static bool rule_enabled(const struct cm_policy__rule *r, const json_t *settings) {
        const json_t *v = json_object_get(settings, "enabled");

        return json_is_boolean(v) ? json_is_true(v) : r->enabled;
}

int cm_policy_evaluate_builtin(const json_t *input, struct cm_policy_decision *ret) {
        struct node_fact stack[NODE_FACTS_STACK];
        _cleanup_free_ struct node_fact *heap = NULL;
        struct cm_policy__eval e = { .input = input, .facts = stack };
        int r = 0;

        e.rules = json_object_get(json_object_get(input, "settings"), "rules");
        e.spec = json_object_get(json_object_get(input, "cluster"), "spec");
        e.engine = json_string_value(json_object_get(e.spec, "engine"));
        e.rke = json_object_get(e.spec, "rke");
        e.nodes = json_object_get(e.rke, "nodes");
        if (!json_is_array(e.nodes))
                e.nodes = NULL;
        e.n_nodes = json_array_size(e.nodes);
        if (e.n_nodes > ELEMENTSOF(stack)) {
                e.facts = heap = new0(struct node_fact, e.n_nodes);
                if (!heap)
                        return -ENOMEM;
        }
        read_nodes(&e);
        e.deny = json_array();
        e.warn = json_array();
        if (!e.deny || !e.warn) {
                r = -ENOMEM;
                goto out;
        }
        for (const struct cm_policy__rule *rule = cm_policy__rules; rule->id; rule++) {
                const json_t *s = json_object_get(e.rules, rule->id);

                if (!json_is_object(s))
                        s = NULL;
                if (!rule_enabled(rule, s))
                        continue;
                e.rule = rule;
                e.settings = s;
                e.out = effect_is_deny(rule, s) ? e.deny : e.warn;
                r = rule->check(&e);
                if (r < 0)
                        goto out;
        }
        ret->deny = e.deny;
        ret->warn = e.warn;
        return 0;
out:
        json_decref(e.deny);
        json_decref(e.warn);
        return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <jansson.h>

#include "base/common.h"

/*
 * Internals of the policy module shared by builtin.c (the rules and the evaluator), settings.c
 * (settings documents) and match.c (addresses, networks, versions). Not for other modules.
 *
 * Every rule is one row of cm_policy__rules: its id, default effect and state, a description for
 * people, and its parameters with their defaults. The Rego bundle (policy/cratekube/rules.rego)
 * carries the same table; docs/policy.md documents it.
 */

enum cm_policy__param_kind {
        CM_POLICY__COUNT, /* a whole number (strictly: an integer in [min, max]) */
        CM_POLICY__VERSION, /* "" or a Kubernetes version like v1.30.0 */
        CM_POLICY__CIDRS, /* a list of networks like "10.0.0.0/8" */
        CM_POLICY__LABELS, /* an object of label values */
        CM_POLICY__LABEL_KEYS, /* a list of label keys */
        CM_POLICY__ENGINES, /* a list of engine names */
};

struct cm_policy__param {
        const char *name;
        enum cm_policy__param_kind kind;
        long long min, max; /* COUNT: the range settings may give */
        long long def_count; /* COUNT: the default */
        const char *def_string; /* VERSION: the default */
        const char *const *def_pairs; /* LABELS: key, value, ..., NULL; the lists default to [] */
};

struct cm_policy__eval;

struct cm_policy__rule {
        const char *id;
        bool deny; /* the default effect: deny (true) or warn */
        bool enabled; /* enabled by default */
        const char *description;
        const struct cm_policy__param *params; /* NULL-named terminated, or NULL */
        int (*check)(struct cm_policy__eval *e);
};

/* The built-in rules in catalogue order, terminated by a row with a NULL id. */
extern const struct cm_policy__rule cm_policy__rules[];

const struct cm_policy__rule *cm_policy__rule_find(const char *id);
const struct cm_policy__param *cm_policy__param_find(const struct cm_policy__rule *r, const char *name);

/*
 * Whether the evaluator can use v as the value of the parameter: the right JSON type (a count is an
 * integral number from 0 to CM_POLICY__COUNT_MAX; a list holds strings only; a labels object has
 * string values). The evaluator falls back to the default otherwise, as the Rego bundle does.
 */
bool cm_policy__param_usable(const struct cm_policy__param *pd, const json_t *v);
/* The default value of a parameter as JSON (a new reference), NULL on ENOMEM. */
json_t *cm_policy__param_default(const struct cm_policy__param *pd);

#define CM_POLICY__COUNT_MAX 1000000000LL
/* An integral number (integer or real) from 0 to CM_POLICY__COUNT_MAX. */
bool cm_policy__count_value(const json_t *v, long long *ret);

/* --- match.c --- */

/* An IP address as Go's net.IP.To4() sees it: IPv4 (and IPv4-mapped IPv6) in 4 bytes, IPv6 in 16. */
struct cm_policy__ip {
        uint8_t b[16];
        uint8_t len; /* 4 or 16 */
};

/* A network, as Go's (*net.IPNet).Contains sees it: address bytes masked, prefix in bits. */
struct cm_policy__net {
        uint8_t b[16];
        uint8_t mask[16];
        uint8_t len; /* 4 or 16 */
        uint8_t prefix;
};

/* An IPv4 or IPv6 address in text (inet_pton), no zone. */
bool cm_policy__ip_parse(const char *s, struct cm_policy__ip *ret);
/*
 * A network as the evaluator reads it, accepting what Go's net.ParseCIDR accepts (host bits are
 * masked off, the prefix may have leading zeros), so that node-cidrs decides as OPA's
 * net.cidr_contains does.
 */
bool cm_policy__net_parse(const char *s, struct cm_policy__net *ret);
bool cm_policy__net_contains(const struct cm_policy__net *n, const struct cm_policy__ip *ip);
/*
 * The strict check of settings documents: "10.0.0.0/8", "fd00::/8"; no host bits beyond the prefix,
 * no leading zeros in the prefix, no IPv4-mapped IPv6. On failure writes a reason for people.
 */
bool cm_policy__cidr_valid(const char *s, char *why, size_t size);

/*
 * "v1.32.7-rancher1-1" → {1, 32, 7}: a 'v', three dot-separated numbers of 1-9 digits, then nothing
 * or '-' or '+' and anything (the suffix is ignored).
 */
bool cm_policy__version_parse(const char *s, uint32_t ret[3]);
int cm_policy__version_cmp(const uint32_t a[3], const uint32_t b[3]);

/* A label key as cm_labels_validate() takes it: [prefix/]name, name 1-63 of [A-Za-z0-9._-], 253 in all. */
bool cm_policy__label_key_valid(const char *s);

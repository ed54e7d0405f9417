/* SPDX-License-Identifier: Apache-2.0 */
/* The monitor's pure parts: decoders of the API server's answers, the kubeconfig, health conditions. */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/fileio.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "lifecycle/conditions.h"
#include "monitor/health.h"
#include "monitor/tls.h"

#define ELLIPSIS "\xe2\x80\xa6"
#define LIST_MORE ", " ELLIPSIS
/* s starts with the string literal lit. */
#define STARTS(s, lit) strneq((s), "" lit, sizeof(lit) - 1)

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without control characters. */
static bool utf8_shown(const char *text) {
        const unsigned char *s = (const unsigned char *) text;

        for (size_t i = 0; s[i];) {
                uint32_t cp;
                size_t k;

                if (s[i] < 0x80) {
                        if (s[i] < 0x20 || s[i] == 0x7f)
                                return false;
                        i++;
                        continue;
                }
                k = s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : s[i] >= 0xc2 ? 2 : 0;
                if (k == 0 || s[i] > 0xf4)
                        return false;
                cp = s[i] & (0x7fU >> k);
                for (size_t j = 1; j < k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + j] & 0x3fU);
                }
                if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
                        return false;
                i += k;
        }
        return true;
}

/* The parts of two probe results the decoders write (field by field: the struct has padding). */
static bool result_equal(const struct cm_probe_result *a, const struct cm_probe_result *b) {
        return a->nodes_known == b->nodes_known && a->nodes_total == b->nodes_total &&
               a->nodes_ready == b->nodes_ready && streq(a->nodes_not_ready, b->nodes_not_ready) &&
               streq(a->nodes_pressure, b->nodes_pressure) && a->workloads_known == b->workloads_known &&
               a->workloads_total == b->workloads_total &&
               a->workloads_unavailable == b->workloads_unavailable &&
               streq(a->workloads_not_available, b->workloads_not_available) && a->outcome == b->outcome &&
               streq(a->detail, b->detail) && streq(a->version, b->version) &&
               streq(a->failing_checks, b->failing_checks) && a->cert_not_after == b->cert_not_after;
}

/* ---- names -------------------------------------------------------------------------------------- */

static void test_names(void **state) {
        static const char *const outcomes[] = { "OK",       "Unreachable",   "Unauthorized",
                                                "TLSError", "BadKubeconfig", "Error" };
        static const char *const resources[] = { "deployments", "daemonsets", "statefulsets" };
        static const char *const conds[] = { "APIServerAvailable", "NodesReady", "SystemWorkloadsHealthy",
                                             "CertificatesValid", "Healthy" };

        assert_int_equal(ELEMENTSOF(outcomes), _CM_PROBE_OUTCOME_MAX);
        for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
                assert_string_equal(cm_probe_outcome_name((enum cm_probe_outcome) i), outcomes[i]);
        assert_null(cm_probe_outcome_name(_CM_PROBE_OUTCOME_MAX));
        assert_null(cm_probe_outcome_name((enum cm_probe_outcome) - 1));

        assert_int_equal(ELEMENTSOF(resources), _CM_WORKLOAD_KIND_MAX);
        for (size_t i = 0; i < ELEMENTSOF(resources); i++)
                assert_string_equal(cm_workload_resource((enum cm_workload_kind) i), resources[i]);
        assert_null(cm_workload_resource(_CM_WORKLOAD_KIND_MAX));

        assert_int_equal(ELEMENTSOF(conds), _CM_HEALTH_COND_MAX);
        for (size_t i = 0; i < ELEMENTSOF(conds); i++)
                assert_string_equal(cm_health_cond_type((enum cm_health_cond) i), conds[i]);
        assert_null(cm_health_cond_type(_CM_HEALTH_COND_MAX));
}

/* ---- /readyz?verbose ---------------------------------------------------------------------------- */

#define READYZ_OK                                                                                           \
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n"                    \
        "[+]poststarthook/start-apiserver-admission-initializer ok\n[+]shutdown ok\nreadyz check passed\n"

static void test_readyz(void **state) {
        static const struct {
                const char *name;
                const char *body;
                int ret;
                const char *failing;
        } cases[] = {
                { "all pass", READYZ_OK, 0, "" },
                { "two fail",
                  "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]etcd-readiness ok\n"
                  "[-]poststarthook/start-apiextensions-controllers failed: reason withheld\n"
                  "[+]shutdown ok\nreadyz check failed\n",
                  2, "etcd, poststarthook/start-apiextensions-controllers" },
                { "CRLF line ends",
                  "[+]ping ok\r\n[-]etcd failed: reason withheld\r\nreadyz check failed\r\n", 1, "etcd" },
                { "no trailing newline", "[-]etcd failed: reason withheld", 1, "etcd" },
                { "excluded checks count as passing", "[+]etcd excluded: ok\n[+]ping ok\n", 0, "" },
                { "a name alone", "[-]etcd\n", 1, "etcd" },
                { "control characters in a name",
                  "[-]et\x01"
                  "cd\x7f failed\n",
                  1, "et?cd?" },
                { "invalid UTF-8 in a name", "[-]a\xff\xc3 failed\n", 1, "a??" },
                { "empty", "", -EINVAL, NULL },
                { "plain ok", "ok", -EINVAL, NULL },
                { "an HTML error page", "<html><body>502 Bad Gateway</body></html>\n", -EINVAL, NULL },
                { "a check without a name", "[-] failed: x\n[+]\n", -EINVAL, NULL },
                { "brackets only", "[*]ping ok\n[+\n", -EINVAL, NULL },
                { "indented lines are no checks", " [+]ping ok\n", -EINVAL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char out[CM_PROBE_TEXT_MAX] = "untouched";
                int r = cm_probe_decode_readyz(cases[i].body, strlen(cases[i].body), out, sizeof(out));

                if (r != cases[i].ret)
                        fail_msg("case '%s': returned %d, want %d", cases[i].name, r, cases[i].ret);
                if (!streq(out, cases[i].failing ?: "untouched"))
                        fail_msg("case '%s': failing '%s', want '%s'", cases[i].name, out,
                                 cases[i].failing ?: "untouched");
                assert_true(utf8_shown(out));
        }
        /* A NUL byte ends nothing: the length counts. */
        {
                static const char body[] = "[+]ping ok\0\n[-]etcd failed\n";
                char out[CM_PROBE_TEXT_MAX];

                assert_int_equal(cm_probe_decode_readyz(body, sizeof(body) - 1, out, sizeof(out)), 1);
                assert_string_equal(out, "etcd");
        }
}

static void test_readyz_cap(void **state) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(1024 * 1024);
        char out[CM_PROBE_TEXT_MAX], small[16];

        for (int i = 0; i < 100; i++)
                assert_int_equal(strbuf_addf(&body,
                                             "[-]poststarthook/check-number-%03d failed: reason withheld\n",
                                             i),
                                 0);
        assert_int_equal(cm_probe_decode_readyz(body.buf, body.len, out, sizeof(out)), 100);
        assert_true(strlen(out) < sizeof(out));
        assert_true(endswith(out, LIST_MORE));
        assert_true(STARTS(out, "poststarthook/check-number-000, poststarthook/check-number-001, "));
        assert_true(utf8_shown(out));

        /* A buffer too small for one name: its beginning and an ellipsis. */
        assert_int_equal(cm_probe_decode_readyz(body.buf, body.len, small, sizeof(small)), 100);
        assert_string_equal(small, "poststarthoo" ELLIPSIS);

        /* Names of multi-byte characters are never cut inside one. */
        strbuf_reset(&body);
        for (int i = 0; i < 60; i++)
                assert_int_equal(strbuf_addf(&body, "[-]\xc3\xbc\xc3\xbc\xc3\xbc%d failed\n", i), 0);
        assert_int_equal(cm_probe_decode_readyz(body.buf, body.len, out, sizeof(out)), 60);
        assert_true(utf8_shown(out));
        assert_true(endswith(out, LIST_MORE));
}

/* ---- /version ------------------------------------------------------------------------------------- */

static void test_version(void **state) {
        static const struct {
                const char *name;
                const char *body;
                int ret;
                const char *version;
        } cases[] = {
                { "kube-apiserver",
                  "{\n  \"major\": \"1\",\n  \"minor\": \"36\",\n  \"emulationMajor\": \"1\",\n"
                  "  \"gitVersion\": \"v1.36.3\",\n  \"gitCommit\": \"0c1d2e3f\",\n  \"gitTreeState\": "
                  "\"clean\",\n"
                  "  \"buildDate\": \"2026-05-14T10:11:12Z\",\n  \"goVersion\": \"go1.25.1\",\n"
                  "  \"compiler\": \"gc\",\n  \"platform\": \"linux/amd64\"\n}",
                  0, "v1.36.3" },
                { "an rke2 build", "{\"gitVersion\":\"v1.32.7+rke2r1\"}", 0, "v1.32.7+rke2r1" },
                { "control characters replaced", "{\"gitVersion\":\"v1\\u0007\\n\\u202e2\"}", 0, "v1???2" },
                { "too long for the field: cut",
                  "{\"gitVersion\":\"v1.36.3-"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                  0, "v1.36.3-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
                { "no gitVersion", "{\"major\":\"1\",\"minor\":\"36\"}", -EINVAL, NULL },
                { "an empty gitVersion", "{\"gitVersion\":\"\"}", -EINVAL, NULL },
                { "a number", "{\"gitVersion\":136}", -EINVAL, NULL },
                { "an array", "[\"v1.36.3\"]", -EINVAL, NULL },
                { "duplicate keys", "{\"gitVersion\":\"v1.36.3\",\"gitVersion\":\"v9\"}", -EINVAL, NULL },
                { "trailing garbage", "{\"gitVersion\":\"v1.36.3\"} x", -EINVAL, NULL },
                { "not JSON", "v1.36.3", -EINVAL, NULL },
                { "a Status",
                  "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"code\":403}", -EINVAL,
                  NULL },
                { "empty", "", -EINVAL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_probe_result r = {};
                int ret = cm_probe_decode_version(cases[i].body, strlen(cases[i].body), r.version,
                                                  sizeof(r.version));

                if (ret != cases[i].ret)
                        fail_msg("case '%s': returned %d, want %d", cases[i].name, ret, cases[i].ret);
                if (!streq(r.version, cases[i].version ?: ""))
                        fail_msg("case '%s': version '%s', want '%s'", cases[i].name, r.version,
                                 cases[i].version ?: "");
        }
}

/* ---- nodes ------------------------------------------------------------------------------------------ */

/* Test JSON written with single quotes, which read better in C: the real thing, a new string. */
static char *dq(const char *text) {
        char *s = strdup(text);

        assert_non_null(s);
        for (char *p = s; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return s;
}

#define CONTINUE_TOKEN "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDgyMTEsInN0YXJ0Ijoibm9kZS0yXHUwMDAwIn0"

/* What kube-apiserver answers for GET /api/v1/nodes (shortened: no images, no daemon endpoints). */
static const char nodes_three[] =
        "{'kind':'NodeList','apiVersion':'v1','metadata':{'resourceVersion':'48211'},'items':["
        " {'metadata':{'name':'node-0','uid':'0b6a','resourceVersion':'1201',"
        "   'labels':{'kubernetes.io/hostname':'node-0','node-role.kubernetes.io/control-plane':'true'}},"
        "  'spec':{'podCIDR':'10.42.0.0/24'},"
        "  'status':{'capacity':{'cpu':'4','memory':'16Gi'},'conditions':["
        "   {'type':'MemoryPressure','status':'False','reason':'KubeletHasSufficientMemory','message':'m',"
        "    'lastHeartbeatTime':'2026-01-01T00:00:00Z','lastTransitionTime':'2025-12-01T00:00:00Z'},"
        "   {'type':'DiskPressure','status':'False','reason':'KubeletHasNoDiskPressure'},"
        "   {'type':'PIDPressure','status':'False','reason':'KubeletHasSufficientPID'},"
        "   {'type':'Ready','status':'True','reason':'KubeletReady',"
        "    'message':'kubelet is posting ready status'}],"
        "  'addresses':[{'type':'InternalIP','address':'10.0.0.1'}],"
        "  'nodeInfo':{'kubeletVersion':'v1.36.3'}}},"
        " {'metadata':{'name':'node-1'},'spec':{},"
        "  'status':{'conditions':["
        "   {'type':'MemoryPressure','status':'True','reason':'KubeletHasInsufficientMemory'},"
        "   {'type':'Ready','status':'False','reason':'KubeletNotReady','message':'PLEG is not healthy'}]}},"
        " {'metadata':{'name':'node-2'},'spec':{'unschedulable':true,'taints':[{'key':'node.kubernetes.io/"
        "unreachable','effect':'NoSchedule'}]},"
        "  'status':{'conditions':["
        "   {'type':'MemoryPressure','status':'Unknown','reason':'NodeStatusUnknown'},"
        "   {'type':'DiskPressure','status':'True','reason':'KubeletHasDiskPressure'},"
        "   {'type':'PIDPressure','status':'True','reason':'KubeletHasInsufficientPID'},"
        "   {'type':'Ready','status':'Unknown','reason':'NodeStatusUnknown',"
        "    'message':'Kubelet stopped posting node status.'}]}}]}";

/* Decodes a single-quoted node list into r. */
static int decode_nodes_q(const char *text, struct cm_probe_result *r, char *cont, size_t size) {
        _cleanup_free_ char *body = dq(text);

        return cm_probe_decode_nodes(body, strlen(body), r, cont, size);
}

static void test_nodes(void **state) {
        struct cm_probe_result r = {};
        char cont[512] = "x";

        assert_int_equal(decode_nodes_q(nodes_three, &r, cont, sizeof(cont)), 0);
        assert_true(r.nodes_known);
        assert_int_equal(r.nodes_total, 3);
        assert_int_equal(r.nodes_ready, 1);
        assert_string_equal(r.nodes_not_ready, "node-1 (KubeletNotReady), node-2 (NodeStatusUnknown)");
        assert_string_equal(r.nodes_pressure, "node-1: MemoryPressure; node-2: DiskPressure, PIDPressure");
        assert_string_equal(cont, "");

        /* Only the probe's node fields change. */
        assert_int_equal(r.outcome, CM_PROBE_OK);
        assert_false(r.workloads_known);
        assert_string_equal(r.detail, "");
}

static void test_nodes_paging(void **state) {
        static const char page1[] = "{'kind':'NodeList','apiVersion':'v1',"
                                    " 'metadata':{'resourceVersion':'48211','continue':'" CONTINUE_TOKEN
                                    "','remainingItemCount':1},"
                                    " 'items':[{'metadata':{'name':'node-0'},'status':{'conditions':["
                                    "   {'type':'Ready','status':'True','reason':'KubeletReady'}]}},"
                                    "  {'metadata':{'name':'node-1'},'status':{'conditions':["
                                    "   {'type':'Ready','status':'False','reason':'KubeletNotReady'}]}}]}";
        static const char page2[] =
                "{'kind':'NodeList','apiVersion':'v1','metadata':{'resourceVersion':'48211'},"
                " 'items':[{'metadata':{'name':'node-2'},'status':{'conditions':["
                "   {'type':'Ready','status':'Unknown','reason':'NodeStatusUnknown'}]}}]}";
        struct cm_probe_result r = {};
        char cont[256];

        assert_int_equal(decode_nodes_q(page1, &r, cont, sizeof(cont)), 0);
        assert_string_equal(cont, CONTINUE_TOKEN);
        assert_int_equal(r.nodes_total, 2);
        assert_int_equal(decode_nodes_q(page2, &r, cont, sizeof(cont)), 0);
        assert_string_equal(cont, "");
        assert_int_equal(r.nodes_total, 3);
        assert_int_equal(r.nodes_ready, 1);
        assert_string_equal(r.nodes_not_ready, "node-1 (KubeletNotReady), node-2 (NodeStatusUnknown)");

        /* A continue token that does not fit is refused, not cut. */
        {
                struct cm_probe_result before = r;
                char tiny[8] = "keep";

                assert_int_equal(decode_nodes_q(page1, &r, tiny, sizeof(tiny)), -EINVAL);
                assert_true(result_equal(&r, &before));
                assert_string_equal(tiny, "keep");
        }
        /* No continue wanted. */
        assert_int_equal(decode_nodes_q(page2, &r, NULL, 0), 0);
        assert_int_equal(r.nodes_total, 4);
}

static void test_nodes_odd(void **state) {
        static const struct {
                const char *name;
                const char *body; /* single-quoted */
                unsigned total, ready;
                const char *not_ready;
                const char *pressure;
        } cases[] = {
                { "empty list", "{'kind':'NodeList','apiVersion':'v1','metadata':{},'items':[]}", 0, 0, "",
                  "" },
                { "items null", "{'kind':'NodeList','apiVersion':'v1','metadata':{},'items':null}", 0, 0, "",
                  "" },
                { "no kind", "{'items':[{'metadata':{'name':'a'}}]}", 1, 0, "a (Unknown)", "" },
                { "no conditions yet", "{'items':[{'metadata':{'name':'new-node'},'status':{}}]}", 1, 0,
                  "new-node (Unknown)", "" },
                { "Ready without a reason",
                  "{'items':[{'metadata':{'name':'n'},"
                  " 'status':{'conditions':[{'type':'Ready','status':'False'}]}}]}",
                  1, 0, "n (Unknown)", "" },
                { "malformed conditions are skipped",
                  "{'items':[{'metadata':{'name':'n'},'status':{'conditions':["
                  " 1, {'type':'Ready'}, {'type':'Ready','status':'True'}]}}]}",
                  1, 1, "", "" },
                { "control characters and bidi overrides",
                  "{'items':[{'metadata':{'name':'n\\u0007\\u202e1'},'status':{'conditions':["
                  " {'type':'Ready','status':'False','reason':'a\\nb'}, "
                  "{'type':'PIDPressure','status':'True'}]}}]}",
                  1, 0, "n??1 (a?b)", "n??1: PIDPressure" },
                { "pressure on a ready node",
                  "{'items':[{'metadata':{'name':'w1'},'status':{'conditions':["
                  " {'type':'Ready','status':'True'}, {'type':'DiskPressure','status':'True'},"
                  " {'type':'MemoryPressure','status':'False'}]}}]}",
                  1, 1, "", "w1: DiskPressure" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_probe_result r = {};
                char cont[64];
                int ret = decode_nodes_q(cases[i].body, &r, cont, sizeof(cont));

                if (ret != 0)
                        fail_msg("case '%s': returned %d", cases[i].name, ret);
                assert_true(r.nodes_known);
                if (r.nodes_total != cases[i].total || r.nodes_ready != cases[i].ready ||
                    !streq(r.nodes_not_ready, cases[i].not_ready) ||
                    !streq(r.nodes_pressure, cases[i].pressure))
                        fail_msg("case '%s': %u/%u not ready '%s' pressure '%s'", cases[i].name,
                                 r.nodes_ready, r.nodes_total, r.nodes_not_ready, r.nodes_pressure);
        }
}

static void test_nodes_malformed(void **state) {
        static const char *const bodies[] = {
                /* single-quoted */
                "",
                "not json",
                "[]",
                "null",
                "{}",
                "{'kind':'Status','apiVersion':'v1','status':'Failure','reason':'Forbidden','code':403}",
                "{'kind':'PodList','items':[]}",
                "{'kind':7,'items':[]}",
                "{'kind':'NodeList','items':{}}",
                "{'kind':'NodeList','items':[1]}",
                "{'kind':'NodeList','items':[{'metadata':{}}]}",
                "{'kind':'NodeList','items':[{'metadata':{'name':''}}]}",
                "{'kind':'NodeList','items':[{'metadata':{'name':7}}]}",
                "{'kind':'NodeList','items':[{'metadata':{'name':'a'},'status':[]}]}",
                "{'kind':'NodeList','items':[{'metadata':{'name':'a'},'status':{'conditions':{}}}]}",
                "{'kind':'NodeList','metadata':{'continue':5},'items':[]}",
                "{'kind':'NodeList','metadata':{'continue':'a b'},'items':[]}",
                "{'kind':'NodeList','metadata':[],'items':[]}",
                "{'kind':'NodeList','items':[],'items':[]}",
                "{'kind':'NodeList','items':[]} {}",
                "{'kind':'NodeList','items':[{'metadata':{'name':'a\\u0000b'}}]}",
                "{'kind':'NodeList','items':[{'metadata':{'name':'a'}}",
                /* a good first node does not count when the second is bad */
                "{'kind':'NodeList','items':[{'metadata':{'name':'node-0'}},{}]}",
        };
        struct cm_probe_result r = {}, before;
        char cont[64] = "keep";

        assert_int_equal(decode_nodes_q(nodes_three, &r, NULL, 0), 0);
        before = r;
        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                int ret = decode_nodes_q(bodies[i], &r, cont, sizeof(cont));

                if (ret != -EINVAL)
                        fail_msg("body %zu: returned %d: %s", i, ret, bodies[i]);
                if (!result_equal(&r, &before))
                        fail_msg("body %zu changed the result: %s", i, bodies[i]);
                assert_string_equal(cont, "keep");
        }
        /* A NUL inside the body is not the end of it. */
        assert_int_equal(cm_probe_decode_nodes("{\"items\":[]}\0", 13, &r, NULL, 0), -EINVAL);
        assert_int_equal(cm_probe_decode_nodes(NULL, 0, &r, NULL, 0), -EINVAL);
        assert_int_equal(cm_probe_decode_nodes("{\"items\":[]}", 12, NULL, NULL, 0), -EINVAL);
        assert_int_equal(cm_probe_decode_nodes("{\"items\":[]}", 12, &r, cont, 0), -EINVAL);
        assert_true(result_equal(&r, &before));
}

/* A body past 16 MiB is refused before it is parsed. */
static void test_nodes_too_large(void **state) {
        size_t n = 16U * 1024U * 1024U + 1;
        _cleanup_free_ char *big = malloc(n);
        struct cm_probe_result r = {};

        assert_non_null(big);
        memset(big, ' ', n);
        big[0] = '[';
        big[1] = ']';
        assert_int_equal(cm_probe_decode_nodes(big, n, &r, NULL, 0), -EINVAL);
        assert_false(r.nodes_known);
        assert_int_equal(cm_probe_decode_workloads(CM_WORKLOAD_DEPLOYMENT, big, n, &r), -EINVAL);
        /* Exactly 16 MiB is parsed (JSON allows the trailing blanks). */
        assert_int_equal(cm_snprintf(big, n, "{\"kind\":\"NodeList\",\"items\":[]}"), 30);
        big[strlen(big)] = ' ';
        assert_int_equal(cm_probe_decode_nodes(big, n - 1, &r, NULL, 0), 0);
        assert_true(r.nodes_known);
}

/* One node of a large cloud cluster: separator, number twice, DiskPressure, Ready, Ready's reason. */
#define LARGE_NODE                                                                                          \
        "%s{\"metadata\":{\"name\":\"worker-%04d.eu-west-1.compute.internal\",\"labels\":{"                 \
        "\"kubernetes.io/os\":\"linux\",\"topology.kubernetes.io/zone\":\"eu-west-1a\"}},"                  \
        "\"spec\":{\"providerID\":\"aws:///eu-west-1a/i-0%07d\"},"                                          \
        "\"status\":{\"capacity\":{\"cpu\":\"8\",\"memory\":\"32Gi\",\"pods\":\"110\"},\"conditions\":["    \
        "{\"type\":\"MemoryPressure\",\"status\":\"False\",\"reason\":\"KubeletHasSufficientMemory\"},"     \
        "{\"type\":\"DiskPressure\",\"status\":\"%s\",\"reason\":\"r\"},"                                   \
        "{\"type\":\"Ready\",\"status\":\"%s\",\"reason\":\"%s\"}],"                                        \
        "\"images\":[{\"names\":[\"registry.k8s.io/pause:3.10\"],\"sizeBytes\":320368}]}}"

/* 5,000 realistic nodes, 1,000 of them not ready: the lists are capped, decoding stays quick. */
static void test_nodes_large_cluster(void **state) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(32U * 1024U * 1024U);
        struct cm_probe_result r = {};
        uint64_t t0, elapsed;
        char cont[64];

        assert_int_equal(
                strbuf_addl(&body,
                            "{\"kind\":\"NodeList\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":["),
                0);
        for (int i = 0; i < 5000; i++) {
                bool down = i % 5 == 3;

                assert_int_equal(strbuf_addf(&body, LARGE_NODE, i ? "," : "", i, i,
                                             i % 7 == 0 ? "True" : "False", down ? "False" : "True",
                                             down ? "KubeletNotReady" : "KubeletReady"),
                                 0);
        }
        assert_int_equal(strbuf_addl(&body, "]}"), 0);

        t0 = cm_mono_usec();
        assert_int_equal(cm_probe_decode_nodes(body.buf, body.len, &r, cont, sizeof(cont)), 0);
        elapsed = cm_mono_usec() - t0;
        print_message("5000 nodes (%zu bytes) decoded in %" PRIu64 " ms\n", body.len, elapsed / 1000);
        assert_true(elapsed < 5 * USEC_PER_SEC);

        assert_int_equal(r.nodes_total, 5000);
        assert_int_equal(r.nodes_ready, 4000);
        assert_true(STARTS(r.nodes_not_ready, "worker-0003.eu-west-1.compute.internal (KubeletNotReady), "));
        assert_true(endswith(r.nodes_not_ready, LIST_MORE));
        assert_true(endswith(r.nodes_pressure, LIST_MORE));
        assert_true(STARTS(r.nodes_pressure, "worker-0000.eu-west-1.compute.internal: DiskPressure; "));
        assert_true(utf8_shown(r.nodes_not_ready));
        assert_true(utf8_shown(r.nodes_pressure));
}

/* Caps are kept with multi-byte names too, also across pages. */
static void test_nodes_cap_utf8(void **state) {
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT(1024 * 1024);
        struct cm_probe_result r = {};

        for (int page = 0; page < 3; page++) {
                strbuf_reset(&body);
                assert_int_equal(strbuf_addl(&body, "{\"items\":["), 0);
                for (int i = 0; i < 7; i++)
                        assert_int_equal(strbuf_addf(&body,
                                                     "%s{\"metadata\":{\"name\":"
                                                     "\"n\\u00fc\\u4e2d\\ud83d\\ude00-%d-%d\"}}",
                                                     i ? "," : "", page, i),
                                         0);
                assert_int_equal(strbuf_addl(&body, "]}"), 0);
                assert_int_equal(cm_probe_decode_nodes(body.buf, body.len, &r, NULL, 0), 0);
                assert_true(strlen(r.nodes_not_ready) < sizeof(r.nodes_not_ready));
                assert_true(utf8_shown(r.nodes_not_ready));
        }
        assert_int_equal(r.nodes_total, 21);
        assert_true(STARTS(r.nodes_not_ready, "n\xc3\xbc\xe4\xb8\xad\xf0\x9f\x98\x80-0-0 (Unknown), "));
        assert_true(endswith(r.nodes_not_ready, LIST_MORE));

        /* A name longer than the list: cut to 128 bytes shown, then the list goes on. */
        strbuf_reset(&body);
        assert_int_equal(strbuf_addl(&body, "{\"items\":[{\"metadata\":{\"name\":\""), 0);
        for (int i = 0; i < 300; i++)
                assert_int_equal(strbuf_addl(&body, "\\u00e9"), 0);
        assert_int_equal(strbuf_addl(&body, "\"}}]}"), 0);
        r = (struct cm_probe_result){};
        assert_int_equal(cm_probe_decode_nodes(body.buf, body.len, &r, NULL, 0), 0);
        assert_int_equal(strlen(r.nodes_not_ready), 128 + strlen(" (Unknown)"));
        assert_true(utf8_shown(r.nodes_not_ready));
}

/* ---- workloads ---------------------------------------------------------------------------------- */

/* kube-system lists as kube-apiserver answers them (shortened), single-quoted. */
static const char deployments[] =
        "{'kind':'DeploymentList','apiVersion':'apps/v1','metadata':{'resourceVersion':'9'},'items':["
        " {'metadata':{'name':'coredns','namespace':'kube-system','generation':3},"
        "  'spec':{'replicas':2,'selector':{'matchLabels':{'k8s-app':'kube-dns'}}},"
        "  'status':{'observedGeneration':3,'replicas':2,'unavailableReplicas':2,'conditions':["
        "   {'type':'Available','status':'False','reason':'MinimumReplicasUnavailable'},"
        "   {'type':'Progressing','status':'True','reason':'NewReplicaSetAvailable'}]}},"
        " {'metadata':{'name':'metrics-server','namespace':'kube-system'},'spec':{},"
        "  'status':{'availableReplicas':1,'readyReplicas':1,'conditions':["
        "   {'type':'Available','status':'True','reason':'MinimumReplicasAvailable'}]}},"
        " {'metadata':{'name':'calico-kube-controllers'},'spec':{'replicas':1},"
        "  'status':{'availableReplicas':1,'conditions':[{'type':'Available','status':'False'}]}},"
        " {'metadata':{'name':'coredns-autoscaler'},'spec':{'replicas':0},'status':{}},"
        " {'metadata':{'name':'rke2-snapshot-controller'},'spec':{'replicas':3},"
        "  'status':{'availableReplicas':3}}]}";
static const char daemonsets[] =
        "{'kind':'DaemonSetList','apiVersion':'apps/v1','metadata':{},'items':["
        " {'metadata':{'name':'kube-proxy'},'spec':{},'status':{'currentNumberScheduled':3,"
        "  'desiredNumberScheduled':3,'numberAvailable':2,'numberReady':2,'numberUnavailable':1}},"
        " {'metadata':{'name':'canal'},'status':{'desiredNumberScheduled':3,'numberAvailable':3}},"
        " {'metadata':{'name':'gpu-plugin'},'status':{'desiredNumberScheduled':0}}]}";
static const char statefulsets[] =
        "{'kind':'StatefulSetList','apiVersion':'apps/v1','metadata':{},'items':["
        " {'metadata':{'name':'etcd-backup'},'spec':{'replicas':1},'status':{'replicas':1}},"
        " {'metadata':{'name':'vault'},'spec':{'replicas':3},'status':{'readyReplicas':3}}]}";

static int decode_workloads_q(enum cm_workload_kind k, const char *text, struct cm_probe_result *r) {
        _cleanup_free_ char *body = dq(text);

        return cm_probe_decode_workloads(k, body, strlen(body), r);
}

static void test_workloads(void **state) {
        struct cm_probe_result r = {};

        assert_int_equal(decode_workloads_q(CM_WORKLOAD_DEPLOYMENT, deployments, &r), 0);
        assert_true(r.workloads_known);
        assert_int_equal(r.workloads_total, 5);
        assert_int_equal(r.workloads_unavailable, 2);
        assert_string_equal(r.workloads_not_available,
                            "deployment/coredns (0/2 available), "
                            "deployment/calico-kube-controllers (condition Available "
                            "is False)");

        assert_int_equal(decode_workloads_q(CM_WORKLOAD_DAEMONSET, daemonsets, &r), 0);
        assert_int_equal(decode_workloads_q(CM_WORKLOAD_STATEFULSET, statefulsets, &r), 0);
        assert_int_equal(r.workloads_total, 10);
        assert_int_equal(r.workloads_unavailable, 4);
        assert_string_equal(
                r.workloads_not_available,
                "deployment/coredns (0/2 available), deployment/calico-kube-controllers (condition "
                "Available is False), daemonset/kube-proxy (2/3 available), statefulset/etcd-backup "
                "(0/1 ready)");
        assert_false(r.nodes_known);

        /* An empty list is known and healthy. */
        r = (struct cm_probe_result){};
        assert_int_equal(
                decode_workloads_q(CM_WORKLOAD_STATEFULSET, "{'kind':'StatefulSetList','items':[]}", &r), 0);
        assert_true(r.workloads_known);
        assert_int_equal(r.workloads_total, 0);
}

static void test_workloads_malformed(void **state) {
        static const struct {
                enum cm_workload_kind kind;
                const char *body; /* single-quoted */
        } cases[] = {
                { CM_WORKLOAD_DAEMONSET, deployments },
                { CM_WORKLOAD_DEPLOYMENT, daemonsets },
                { CM_WORKLOAD_DEPLOYMENT, "" },
                { CM_WORKLOAD_DEPLOYMENT, "{'kind':'DeploymentList'}" },
                { CM_WORKLOAD_DEPLOYMENT, "{'kind':'DeploymentList','items':[{'spec':{}}]}" },
                { CM_WORKLOAD_DEPLOYMENT,
                  "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'spec':{'replicas':'2'}}]}" },
                { CM_WORKLOAD_DEPLOYMENT,
                  "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'spec':{'replicas':-1}}]}" },
                { CM_WORKLOAD_DEPLOYMENT,
                  "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'spec':{'replicas':1.5}}]}" },
                { CM_WORKLOAD_DEPLOYMENT, "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'spec'"
                                          ":{'replicas':4294967297}}]}" },
                { CM_WORKLOAD_DEPLOYMENT,
                  "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'spec':[]}]}" },
                { CM_WORKLOAD_DEPLOYMENT, "{'kind':'DeploymentList','items':[{'metadata':{'name':'a'},'"
                                          "status':{'conditions':'x'}}]}" },
                { CM_WORKLOAD_DAEMONSET,
                  "{'kind':'DaemonSetList','items':[{'metadata':{'name':'a'},'status':'ok'}]}" },
                { CM_WORKLOAD_DAEMONSET, "{'kind':'DaemonSetList','items':[{'metadata':{'name':'a'},'status'"
                                         ":{'numberAvailable':true}}]}" },
                { CM_WORKLOAD_STATEFULSET, "{'kind':'StatefulSetList','items':[{'metadata':{'name':'a'},'"
                                           "status':{'readyReplicas':null}},3]}" },
                { _CM_WORKLOAD_KIND_MAX, "{'items':[]}" },
        };
        struct cm_probe_result r = {}, before;

        assert_int_equal(decode_workloads_q(CM_WORKLOAD_DEPLOYMENT, deployments, &r), 0);
        before = r;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int ret = decode_workloads_q(cases[i].kind, cases[i].body, &r);

                if (ret != -EINVAL)
                        fail_msg("case %zu: returned %d: %s", i, ret, cases[i].body);
                if (!result_equal(&r, &before))
                        fail_msg("case %zu changed the result", i);
        }
        assert_int_equal(cm_probe_decode_workloads(CM_WORKLOAD_DEPLOYMENT, "{\"items\":[]}", 12, NULL),
                         -EINVAL);
}

/* ---- kubeconfig ------------------------------------------------------------------------------------- */

/* Fake PEM text: the parser only decodes; none of these is key material. */
#define CA_B64 "VEVTVC1DQS1QRU0K" /* "TEST-CA-PEM\n" */
#define CERT_B64 "VEVTVC1DTElFTlQtQ0VSVAo=" /* "TEST-CLIENT-CERT\n" */
#define KEY_B64 "VEVTVC1DTElFTlQtS0VZCg==" /* "TEST-CLIENT-KEY\n" */
/* The canaries: planted in every refused kubeconfig, never allowed in an error. */
#define CANARY "CANARY-5e1f0c"
#define CANARY_KEY_B64 "Q0FOQVJZLUtFWS01ZTFmMGMK" /* "CANARY-KEY-5e1f0c\n" */
#define CANARY_NUMBER "918273645546372819918273645"

#define KC_HEAD                                                                                             \
        "apiVersion: v1\nkind: Config\ncurrent-context: local\npreferences: {}\n"                           \
        "contexts:\n- name: local\n  context:\n    cluster: local\n    user: kube-admin-local\n"
#define KC_CLUSTER(body) "clusters:\n- name: local\n  cluster:\n" body
#define KC_SERVER "    server: \"https://10.0.0.1:6443\"\n"
#define KC_CA "    certificate-authority-data: " CA_B64 "\n"
/* The user, and a second one that holds the canaries. */
#define KC_USERS(body)                                                                                      \
        "users:\n- name: kube-admin-local\n  user:\n" body "- name: other\n  user:\n"                       \
        "    client-certificate-data: " CERT_B64 "\n    client-key-data: " CANARY_KEY_B64 "\n"
#define KC_CERT "    client-certificate-data: " CERT_B64 "\n"
#define KC_KEY "    client-key-data: " KEY_B64 "\n"
#define KC_GOOD_CLUSTER KC_CLUSTER(KC_SERVER KC_CA)
#define KC_CERT_USER KC_USERS(KC_CERT "    client-key-data: " CANARY_KEY_B64 "\n")

static void kubeconfig_ok(const char *text, struct cm_kubeconfig *k) {
        char err[256] = "";
        int r = cm_kubeconfig_parse(text, strlen(text), k, err, sizeof(err));

        if (r != 0)
                fail_msg("refused (%d): %s", r, err);
}

static void test_kubeconfig_cert(void **state) {
        static const char text[] =
                "apiVersion: v1\nkind: Config\n"
                "clusters:\n"
                "- cluster:\n    certificate-authority-data: " CERT_B64 "\n    server: https://other:6443\n"
                "  name: other\n"
                "- cluster:\n    certificate-authority-data: " CA_B64 "\n"
                "    server: \"https://rke.example.com:6443/\"\n    tls-server-name: kubernetes.default\n"
                "  name: local\n"
                "contexts:\n- context:\n    cluster: other\n    user: other\n  name: other\n"
                "- context:\n    cluster: local\n    user: kube-admin-local\n    namespace: default\n"
                "  name: local\n"
                "current-context: local\n"
                "users:\n- name: other\n  user:\n    token: abc\n"
                "- name: kube-admin-local\n  user:\n    client-certificate-data: " CERT_B64 "\n"
                "    client-key-data: " KEY_B64 "\n";
        struct cm_kubeconfig k = {};

        kubeconfig_ok(text, &k);
        assert_string_equal(k.server, "https://rke.example.com:6443");
        assert_string_equal(k.tls_server_name, "kubernetes.default");
        assert_string_equal(k.ca_pem, "TEST-CA-PEM\n");
        assert_int_equal(k.ca_len, 12);
        assert_string_equal(k.cert_pem, "TEST-CLIENT-CERT\n");
        assert_int_equal(k.cert_len, 17);
        assert_string_equal(k.key_pem, "TEST-CLIENT-KEY\n");
        assert_int_equal(k.key_len, 16);
        assert_null(k.token);
        cm_kubeconfig_done(&k);
        assert_null(k.server);
        assert_null(k.key_pem);
        assert_int_equal(k.key_len, 0);
        cm_kubeconfig_done(&k);
        cm_kubeconfig_done(NULL);
}

static void test_kubeconfig_token(void **state) {
        /* JSON, one context and no current-context, a path in the server URL. */
        static const char text[] =
                "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"clusters\":[{\"name\":\"prod\",\"cluster\":{"
                "\"server\":\"https://rancher.example.com/k8s/clusters/c-m-8x2lq\","
                "\"certificate-authority-data\":\"" CA_B64 "\",\"insecure-skip-tls-verify\":false}}],"
                "\"users\":[{\"name\":\"prod\",\"user\":{\"token\":\"kubeconfig-u-abc12:x9z8y7\"}}],"
                "\"contexts\":[{\"name\":\"prod\",\"context\":{\"user\":\"prod\",\"cluster\":\"prod\"}}]}";
        struct cm_kubeconfig k = {};

        kubeconfig_ok(text, &k);
        assert_string_equal(k.server, "https://rancher.example.com/k8s/clusters/c-m-8x2lq");
        assert_null(k.tls_server_name);
        assert_string_equal(k.ca_pem, "TEST-CA-PEM\n");
        assert_string_equal(k.token, "kubeconfig-u-abc12:x9z8y7");
        assert_null(k.cert_pem);
        assert_null(k.key_pem);
        cm_kubeconfig_done(&k);
        assert_null(k.token);
        assert_null(k.ca_pem);

        /* The plain YAML form with an IPv6 server and an empty current-context. */
        kubeconfig_ok("current-context: \"\"\n"
                      "clusters:\n- name: c\n  cluster:\n    server: https://[fd00::1]:6443\n"
                      "    certificate-authority-data: " CA_B64 "\n"
                      "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                      "users:\n- name: u\n  user:\n    token: t0k3n\n",
                      &k);
        assert_string_equal(k.server, "https://[fd00::1]:6443");
        assert_string_equal(k.token, "t0k3n");
        cm_kubeconfig_done(&k);
}

static void test_kubeconfig_refused(void **state) {
        static const struct {
                const char *name;
                const char *text;
                const char *reason;
        } cases[] = {
                { "CA file",
                  KC_HEAD KC_CLUSTER(KC_SERVER "    certificate-authority: /etc/kubernetes/ca.crt\n")
                          KC_CERT_USER,
                  "the kubeconfig must embed its credentials (certificate-authority-data), not name files" },
                { "client certificate file",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS("    client-certificate: /home/u/.kube/admin.crt\n"
                                                   "    client-key-data: " CANARY_KEY_B64 "\n"),
                  "the kubeconfig must embed its credentials (client-certificate-data), not name files" },
                { "client key file",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT "    client-key: /home/u/.kube/admin.key\n"),
                  "the kubeconfig must embed its credentials (client-key-data), not name files" },
                { "token file", KC_HEAD KC_GOOD_CLUSTER KC_USERS("    tokenFile: /var/run/secrets/token\n"),
                  "the kubeconfig must embed its credentials (token), not name files" },
                { "exec plugin",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(
                          "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                          "      command: aws\n      args: [eks, get-token, --cluster-name, " CANARY "]\n"),
                  "plugin (exec)" },
                { "auth provider",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS("    auth-provider:\n      name: oidc\n      config:\n"
                                                   "        id-token: " CANARY "\n"),
                  "plugin (auth-provider)" },
                { "username and password",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS("    username: admin\n    password: " CANARY "\n"),
                  "username and password" },
                { "insecure",
                  KC_HEAD KC_CLUSTER(KC_SERVER KC_CA "    insecure-skip-tls-verify: true\n") KC_CERT_USER,
                  "turns TLS verification off (insecure-skip-tls-verify)" },
                { "insecure as text",
                  KC_HEAD KC_CLUSTER(KC_SERVER KC_CA "    insecure-skip-tls-verify: \"yes\"\n") KC_CERT_USER,
                  "insecure-skip-tls-verify must be true or false" },
                { "plain http", KC_HEAD KC_CLUSTER("    server: http://10.0.0.1:8080\n" KC_CA) KC_CERT_USER,
                  "the cluster's server must be an https:// URL" },
                { "no server", KC_HEAD KC_CLUSTER(KC_CA) KC_CERT_USER, "the cluster has no server" },
                { "no host", KC_HEAD KC_CLUSTER("    server: https:///api\n" KC_CA) KC_CERT_USER,
                  "names no host" },
                { "credentials in the URL",
                  KC_HEAD KC_CLUSTER("    server: https://admin:" CANARY "@10.0.0.1:6443\n" KC_CA)
                          KC_CERT_USER,
                  "must not carry credentials" },
                { "a query",
                  KC_HEAD KC_CLUSTER("    server: https://h:6443/?token=" CANARY "\n" KC_CA) KC_CERT_USER,
                  "not a valid URL" },
                { "a space", KC_HEAD KC_CLUSTER("    server: \"https://h:6443/a b\"\n" KC_CA) KC_CERT_USER,
                  "not a valid URL" },
                { "a port out of range",
                  KC_HEAD KC_CLUSTER("    server: https://h:65536\n" KC_CA) KC_CERT_USER,
                  "a port from 1 to 65535" },
                { "a port that is no number",
                  KC_HEAD KC_CLUSTER("    server: https://h:64x3/api\n" KC_CA) KC_CERT_USER,
                  "a port from 1" },
                { "an unclosed IPv6 address",
                  KC_HEAD KC_CLUSTER("    server: https://[fd00::1:6443\n" KC_CA) KC_CERT_USER,
                  "([...] for IPv6)" },
                { "a host name with a bad character",
                  KC_HEAD KC_CLUSTER("    server: https://h%41st:6443\n" KC_CA) KC_CERT_USER,
                  "a host name" },
                { "no CA", KC_HEAD KC_CLUSTER(KC_SERVER) KC_CERT_USER,
                  "the cluster has no certificate-authority-data" },
                { "an empty CA",
                  KC_HEAD KC_CLUSTER(KC_SERVER "    certificate-authority-data: \"\"\n") KC_CERT_USER,
                  "the cluster has no certificate-authority-data" },
                { "CA not base64",
                  KC_HEAD KC_CLUSTER(KC_SERVER "    certificate-authority-data: Q0FEQVRB=\n") KC_CERT_USER,
                  "certificate-authority-data is not base64-encoded PEM" },
                { "CA with a NUL byte",
                  KC_HEAD KC_CLUSTER(KC_SERVER "    certificate-authority-data: YQBi\n") KC_CERT_USER,
                  "certificate-authority-data is not base64-encoded PEM" },
                { "proxy",
                  KC_HEAD KC_CLUSTER(KC_SERVER KC_CA "    proxy-url: http://proxy:3128\n") KC_CERT_USER,
                  "proxy-url" },
                { "bad tls-server-name",
                  KC_HEAD KC_CLUSTER(KC_SERVER KC_CA "    tls-server-name: \"a/b\"\n") KC_CERT_USER,
                  "tls-server-name must be a host name" },
                { "no credentials", KC_HEAD KC_GOOD_CLUSTER KC_USERS("    {}\n"),
                  "the kubeconfig's user has no credentials" },
                { "certificate without key", KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT),
                  "has client-certificate-data but no client-key-data" },
                { "key without certificate",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS("    client-key-data: " CANARY_KEY_B64 "\n"),
                  "has client-key-data but no client-certificate-data" },
                { "certificate and token",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT "    client-key-data: " CANARY_KEY_B64
                                                           "\n    token: " CANARY "\n"),
                  "both a client certificate and a token" },
                { "key with whitespace",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT
                                                   "    client-key-data: \"Q0FOQVJZLUtF WS01ZTFmMGMK\"\n"),
                  "client-key-data is not base64-encoded PEM" },
                { "key with a line break",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT
                                                   "    client-key-data: \"Q0FOQVJZLUtF\\nWS01ZTFmMGMK\"\n"),
                  "client-key-data is not base64-encoded PEM" },
                { "key not padded",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT "    client-key-data: Q0FOQVJZLUtFWS01ZTFmMGM\n"),
                  "client-key-data is not base64-encoded PEM" },
                { "key as a number",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS(KC_CERT "    client-key-data: " CANARY_NUMBER "1\n"),
                  "not valid YAML or JSON" },
                { "a token with a line break",
                  KC_HEAD KC_GOOD_CLUSTER KC_USERS("    token: \"" CANARY "\\r\\nX-Injected: 1\"\n"),
                  "characters a bearer token cannot have" },
                { "a token with a NUL", KC_HEAD KC_GOOD_CLUSTER KC_USERS("    token: \"" CANARY "\\0x\"\n"),
                  "characters a bearer token cannot have" },
                { "a server name with a NUL",
                  KC_HEAD KC_CLUSTER(KC_SERVER KC_CA "    tls-server-name: \"a\\0b\"\n") KC_CERT_USER,
                  "tls-server-name must be a host name" },
                { "a token as a number", KC_HEAD KC_GOOD_CLUSTER KC_USERS("    token: 12345\n"),
                  "the user's token must be a string" },
                { "unknown current context",
                  "current-context: nowhere\n"
                  "contexts:\n- name: local\n"
                  "  context: {cluster: local, user: kube-admin-local}\n" KC_GOOD_CLUSTER KC_CERT_USER,
                  "current-context names a context that the kubeconfig does not have" },
                { "unknown cluster",
                  "current-context: local\n"
                  "contexts:\n- name: local\n"
                  "  context: {cluster: gone, user: kube-admin-local}\n" KC_GOOD_CLUSTER KC_CERT_USER,
                  "the current context names a cluster that the kubeconfig does not have" },
                { "unknown user",
                  "current-context: local\n"
                  "contexts:\n- name: local\n  context: {cluster: local, user: gone}\n" KC_GOOD_CLUSTER
                          KC_CERT_USER,
                  "the current context names a user that the kubeconfig does not have" },
                { "two contexts, none current",
                  "contexts:\n- name: a\n  context: {cluster: local, user: kube-admin-local}\n"
                  "- name: b\n  context: {cluster: local, user: kube-admin-local}\n" KC_GOOD_CLUSTER
                          KC_CERT_USER,
                  "the kubeconfig has 2 contexts and no current-context" },
                { "no contexts", KC_GOOD_CLUSTER KC_CERT_USER, "the kubeconfig has no contexts" },
                { "context without user",
                  "contexts:\n- name: a\n  context: {cluster: local}\n" KC_GOOD_CLUSTER KC_CERT_USER,
                  "the kubeconfig's context names no user" },
                { "two clusters alike",
                  KC_HEAD KC_GOOD_CLUSTER "- name: local\n  cluster:\n" KC_SERVER KC_CA KC_CERT_USER,
                  "the kubeconfig has two clusters with the name the current context uses" },
                { "no clusters", KC_HEAD KC_CERT_USER, "the kubeconfig has no clusters" },
                { "an entry without a name",
                  KC_HEAD "clusters:\n- cluster: {server: https://a}\n" KC_CERT_USER,
                  "every entry of clusters must be a mapping with a name" },
                { "a Secret", "apiVersion: v1\nkind: Secret\ndata:\n  token: " CANARY "\n",
                  "not a kubeconfig" },
                { "a list", "- " CANARY "\n- b\n", "the kubeconfig is not a mapping" },
                { "a scalar", CANARY "\n", "the kubeconfig is not a mapping" },
                { "broken YAML", "users:\n- name: u\n  user:\n    token: " CANARY "\n   bad: [" CANARY "\n",
                  "not valid YAML or JSON (line " },
                { "a YAML tag", "token: !secret " CANARY "\n", "not valid YAML or JSON (line " },
                { "broken JSON", "{\"users\": [" CANARY "]}", "not valid YAML or JSON (line 1" },
                { "duplicate keys", "{\"token\": \"" CANARY "\", \"token\": \"" CANARY "\"}",
                  "not valid YAML or JSON" },
                { "a YAML anchor", "a: &" CANARY " x\nb: *" CANARY "\n", "not valid YAML or JSON" },
                { "empty", "", "the kubeconfig is empty" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_kubeconfig k, sentinel;
                char err[256] = "";
                int r;

                memset(&k, 0x5a, sizeof(k));
                sentinel = k;
                r = cm_kubeconfig_parse(cases[i].text, strlen(cases[i].text), &k, err, sizeof(err));
                if (r != -EINVAL)
                        fail_msg("case '%s': returned %d (%s)", cases[i].name, r, err);
                if (!strstr(err, cases[i].reason))
                        fail_msg("case '%s': error '%s' lacks '%s'", cases[i].name, err, cases[i].reason);
                if (strstr(err, "CANARY") || strstr(err, "Q0FOQVJZ") || strstr(err, "5e1f0c") ||
                    strstr(err, "91827364"))
                        fail_msg("case '%s': the error quotes the kubeconfig: %s", cases[i].name, err);
                if (memcmp(&k, &sentinel, sizeof(k)) != 0)
                        fail_msg("case '%s': ret written on failure", cases[i].name);
        }
}

static void test_kubeconfig_limits(void **state) {
        size_t n = CM_KUBECONFIG_MAX + 1;
        _cleanup_free_ char *big = malloc(n);
        struct cm_kubeconfig k = {};
        char err[128] = "", tiny[8];

        assert_non_null(big);
        memset(big, '#', n);
        assert_int_equal(cm_kubeconfig_parse(big, n, &k, err, sizeof(err)), -EFBIG);
        assert_string_equal(err, "the kubeconfig is larger than 1048576 bytes");
        assert_null(k.server);

        /* The error buffer may be small or absent. */
        assert_int_equal(cm_kubeconfig_parse("x: 1\n", 5, &k, tiny, sizeof(tiny)), -EINVAL);
        assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
        assert_int_equal(cm_kubeconfig_parse("x: 1\n", 5, &k, NULL, 0), -EINVAL);
        assert_int_equal(cm_kubeconfig_parse(NULL, 0, &k, err, sizeof(err)), -EINVAL);
}

/* ---- health ------------------------------------------------------------------------------------------ */

#define NOW INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define DAY INT64_C(86400)

static const struct cm_health_settings settings = { .failure_threshold = 3, .cert_warning_days = 30 };

/* A probe of a healthy cluster: the cases below change it. */
static struct cm_probe_result probe_good(void) {
        struct cm_probe_result r = {
                .outcome = CM_PROBE_OK,
                .livez_status = 200,
                .readyz_status = 200,
                .nodes_known = true,
                .nodes_total = 3,
                .nodes_ready = 3,
                .workloads_known = true,
                .workloads_total = 12,
                .cert_not_after = NOW + 300 * DAY,
                .latency_usec = 42 * USEC_PER_MSEC,
                .time_usec = (uint64_t) NOW * USEC_PER_SEC,
        };

        (void) cm_strlcpy(r.version, "v1.36.3", sizeof(r.version));
        return r;
}

static void p_none(struct cm_probe_result *r) {
}
static void p_unreachable(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_UNREACHABLE };
        (void) cm_strlcpy(r->detail, "connect to 10.0.0.1 port 6443: connection refused", sizeof(r->detail));
}
static void p_unauthorized(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_UNAUTHORIZED };
        (void) cm_strlcpy(r->detail,
                          "the API server refused the kubeconfig's credentials (HTTP 401 for /livez)",
                          sizeof(r->detail));
}
static void p_tls(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_TLS_ERROR };
}
static void p_bad_kubeconfig(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_BAD_KUBECONFIG };
        (void) cm_strlcpy(r->detail,
                          "the kubeconfig in the state vault is not usable: the kubeconfig must embed its "
                          "credentials (client-key-data), not name files",
                          sizeof(r->detail));
}
static void p_unauthorized_bare(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_UNAUTHORIZED };
}
static void p_tls_detail(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_TLS_ERROR };
        (void) cm_strlcpy(r->detail, "SSL certificate problem: self-signed certificate in certificate chain",
                          sizeof(r->detail));
}
static void p_bad_kubeconfig_bare(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_BAD_KUBECONFIG };
}
static void p_error(struct cm_probe_result *r) {
        *r = (struct cm_probe_result){ .outcome = CM_PROBE_ERROR };
        (void) cm_strlcpy(r->detail, "HTTP 502 for the node list", sizeof(r->detail));
}
static void p_readyz(struct cm_probe_result *r) {
        r->readyz_status = 500;
        (void) cm_strlcpy(r->failing_checks, "etcd, poststarthook/start-apiextensions-controllers",
                          sizeof(r->failing_checks));
}
static void p_livez(struct cm_probe_result *r) {
        r->livez_status = 503;
}
static void p_livez_unasked(struct cm_probe_result *r) {
        r->livez_status = 0;
}
static void p_nodes_down(struct cm_probe_result *r) {
        r->nodes_ready = 1;
        (void) cm_strlcpy(r->nodes_not_ready, "node-1 (KubeletNotReady), node-2 (NodeStatusUnknown)",
                          sizeof(r->nodes_not_ready));
}
static void p_pressure(struct cm_probe_result *r) {
        (void) cm_strlcpy(r->nodes_pressure, "node-1: MemoryPressure", sizeof(r->nodes_pressure));
}
static void p_no_nodes(struct cm_probe_result *r) {
        r->nodes_total = r->nodes_ready = 0;
}
static void p_nodes_unknown(struct cm_probe_result *r) {
        r->nodes_known = false;
        r->nodes_total = r->nodes_ready = 0;
}
static void p_workloads_down(struct cm_probe_result *r) {
        r->workloads_unavailable = 1;
        (void) cm_strlcpy(r->workloads_not_available, "deployment/coredns (0/2 available)",
                          sizeof(r->workloads_not_available));
}
static void p_cert_expired(struct cm_probe_result *r) {
        r->cert_not_after = NOW - 2 * DAY;
}
static void p_cert_now(struct cm_probe_result *r) {
        r->cert_not_after = NOW;
}
static void p_cert_expiring(struct cm_probe_result *r) {
        r->cert_not_after = NOW + 12 * DAY + 3600;
}
static void p_cert_hours(struct cm_probe_result *r) {
        r->cert_not_after = NOW + 3600;
}
static void p_cert_at_window(struct cm_probe_result *r) {
        r->cert_not_after = NOW + 30 * DAY;
}
static void p_cert_unknown(struct cm_probe_result *r) {
        r->cert_not_after = 0;
}
static void p_everything_wrong(struct cm_probe_result *r) {
        p_nodes_down(r);
        p_workloads_down(r);
        p_cert_expired(r);
}
static void p_unknown_then_false(struct cm_probe_result *r) {
        p_nodes_unknown(r);
        p_workloads_down(r);
}
static void p_false_then_unknown(struct cm_probe_result *r) {
        p_workloads_down(r);
        p_cert_unknown(r);
}

/* "status/reason" of the five conditions, separated by spaces. */
static void health_summary(const struct cm_health *h, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = 0;
        for (int c = 0; c < _CM_HEALTH_COND_MAX; c++) {
                int n = snprintf(buf + o, size - o, "%s%s/%s", c ? " " : "", h->cond[c].status,
                                 h->cond[c].reason);

                assert_true(n > 0 && (size_t) n < size - o);
                o += (size_t) n;
        }
}

enum prev_kind { PREV_NEVER, PREV_HEALTHY };

#define ALL_GOOD "True/Available True/AllNodesReady True/AllAvailable True/Valid "
#define API_DOWN(reason)                                                                                    \
        "False/" reason " Unknown/APIServerUnavailable Unknown/APIServerUnavailable "                       \
        "Unknown/APIServerUnavailable False/" reason

static void test_health_evaluate(void **state) {
        static const struct {
                const char *name;
                void (*probe)(struct cm_probe_result *r);
                unsigned failures;
                enum prev_kind prev;
                const char *expect;
                enum cm_health_cond cond; /* whose message is checked */
                const char *message; /* the whole message, or NULL */
        } cases[] = {
                { "never probed, OK", p_none, 0, PREV_NEVER, ALL_GOOD "True/Healthy", CM_COND_HEALTHY,
                  "all checks pass" },
                { "API message", p_none, 0, PREV_NEVER, ALL_GOOD "True/Healthy",
                  CM_COND_API_SERVER_AVAILABLE, "the API server (v1.36.3) answered in 42 ms" },
                { "nodes message", p_none, 0, PREV_NEVER, ALL_GOOD "True/Healthy", CM_COND_NODES_READY,
                  "all 3 nodes are ready" },
                { "workloads message", p_none, 0, PREV_NEVER, ALL_GOOD "True/Healthy",
                  CM_COND_SYSTEM_WORKLOADS_HEALTHY, "all 12 kube-system workloads are available" },
                { "one failure keeps the conditions", p_unreachable, 1, PREV_HEALTHY,
                  ALL_GOOD "True/Healthy", CM_COND_HEALTHY, "all checks pass" },
                { "two failures keep them", p_unauthorized, 2, PREV_HEALTHY, ALL_GOOD "True/Healthy",
                  CM_COND_HEALTHY, NULL },
                { "a failure below the threshold, never probed", p_unreachable, 2, PREV_NEVER, "/ / / / /",
                  CM_COND_HEALTHY, "" },
                { "unreachable at the threshold", p_unreachable, 3, PREV_HEALTHY, API_DOWN("Unreachable"),
                  CM_COND_API_SERVER_AVAILABLE,
                  "the API server has not answered 3 probes in a row: "
                  "connect to 10.0.0.1 port 6443: connection refused" },
                { "unreachable over the threshold, never probed", p_unreachable, 7, PREV_NEVER,
                  API_DOWN("Unreachable"), CM_COND_HEALTHY,
                  "the API server has not answered 7 probes in a row: "
                  "connect to 10.0.0.1 port 6443: connection refused; "
                  "not checked: the API server is not available" },
                { "the others are unknown", p_unreachable, 3, PREV_HEALTHY, API_DOWN("Unreachable"),
                  CM_COND_NODES_READY, "not checked: the API server is not available" },
                { "unauthorized", p_unauthorized, 3, PREV_HEALTHY, API_DOWN("Unauthorized"),
                  CM_COND_API_SERVER_AVAILABLE,
                  "the API server refused the kubeconfig's credentials (HTTP 401 for /livez)" },
                { "unauthorized without detail", p_unauthorized_bare, 3, PREV_HEALTHY,
                  API_DOWN("Unauthorized"), CM_COND_API_SERVER_AVAILABLE,
                  "the API server refused the kubeconfig's credentials" },
                { "TLS error", p_tls_detail, 5, PREV_HEALTHY, API_DOWN("TLSError"),
                  CM_COND_API_SERVER_AVAILABLE,
                  "the API server's certificate did not verify against the kubeconfig's CA "
                  "(5 probes in a row): SSL certificate problem: self-signed certificate in certificate "
                  "chain" },
                { "TLS error without detail", p_tls, 3, PREV_HEALTHY, API_DOWN("TLSError"),
                  CM_COND_API_SERVER_AVAILABLE,
                  "the API server's certificate did not verify against the kubeconfig's CA "
                  "(3 probes in a row)" },
                { "bad kubeconfig", p_bad_kubeconfig, 3, PREV_NEVER, API_DOWN("BadKubeconfig"),
                  CM_COND_API_SERVER_AVAILABLE,
                  "the kubeconfig in the state vault is not usable: "
                  "the kubeconfig must embed its credentials (client-key-data), not name files" },
                { "bad kubeconfig without detail", p_bad_kubeconfig_bare, 1, PREV_HEALTHY,
                  ALL_GOOD "True/Healthy", CM_COND_HEALTHY, NULL },
                { "error", p_error, 4, PREV_HEALTHY, API_DOWN("Error"), CM_COND_API_SERVER_AVAILABLE,
                  "the probe failed 4 times in a row: HTTP 502 for the node list" },
                { "readyz failing", p_readyz, 0, PREV_HEALTHY,
                  "False/NotReady True/AllNodesReady True/AllAvailable True/Valid False/NotReady",
                  CM_COND_API_SERVER_AVAILABLE,
                  "the API server is not ready: /readyz answered 500, failing checks: etcd, "
                  "poststarthook/start-apiextensions-controllers" },
                { "livez failing", p_livez, 0, PREV_HEALTHY,
                  "False/NotReady True/AllNodesReady True/AllAvailable True/Valid False/NotReady",
                  CM_COND_API_SERVER_AVAILABLE, "the API server is not ready: /livez answered 503" },
                { "livez not asked", p_livez_unasked, 0, PREV_HEALTHY, ALL_GOOD "True/Healthy",
                  CM_COND_HEALTHY, NULL },
                { "nodes not ready", p_nodes_down, 0, PREV_HEALTHY,
                  "True/Available False/NodesNotReady True/AllAvailable True/Valid False/NodesNotReady",
                  CM_COND_NODES_READY,
                  "2 of 3 nodes not ready: node-1 (KubeletNotReady), node-2 (NodeStatusUnknown)" },
                { "pressure keeps NodesReady true", p_pressure, 0, PREV_HEALTHY, ALL_GOOD "True/Healthy",
                  CM_COND_NODES_READY, "all 3 nodes are ready; pressure: node-1: MemoryPressure" },
                { "no nodes", p_no_nodes, 0, PREV_HEALTHY,
                  "True/Available False/NoNodes True/AllAvailable True/Valid False/NoNodes",
                  CM_COND_NODES_READY, "the cluster has no nodes" },
                { "nodes not listed", p_nodes_unknown, 0, PREV_HEALTHY,
                  "True/Available Unknown/NotChecked True/AllAvailable True/Valid Unknown/NotChecked",
                  CM_COND_HEALTHY, "the nodes were not listed" },
                { "workloads unavailable", p_workloads_down, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady False/WorkloadsUnavailable True/Valid "
                  "False/WorkloadsUnavailable",
                  CM_COND_SYSTEM_WORKLOADS_HEALTHY,
                  "1 of 12 kube-system workloads not available: deployment/coredns (0/2 available)" },
                { "certificate expired", p_cert_expired, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable False/Expired False/Expired",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate expired on 2025-12-30" },
                { "certificate expires this second", p_cert_now, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable False/Expired False/Expired",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate expired on 2026-01-01" },
                { "certificate expiring", p_cert_expiring, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable True/ExpiringSoon True/ExpiringSoon",
                  CM_COND_HEALTHY, "the serving certificate expires on 2026-01-13 (in 12 days)" },
                { "certificate expiring, the condition", p_cert_expiring, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable True/ExpiringSoon True/ExpiringSoon",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate expires on 2026-01-13 (in 12 days)" },
                { "certificate expiring within hours", p_cert_hours, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable True/ExpiringSoon True/ExpiringSoon",
                  CM_COND_CERTIFICATES_VALID,
                  "the serving certificate expires on 2026-01-01 (in less than a day)" },
                { "certificate at the warning window", p_cert_at_window, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable True/ExpiringSoon True/ExpiringSoon",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate expires on 2026-01-31 (in 30 days)" },
                { "certificate valid", p_none, 0, PREV_HEALTHY, ALL_GOOD "True/Healthy",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate is valid until 2026-10-28" },
                { "certificate unknown", p_cert_unknown, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady True/AllAvailable Unknown/NotChecked "
                  "Unknown/NotChecked",
                  CM_COND_CERTIFICATES_VALID, "the serving certificate's expiry is not known" },
                { "rollup order and message", p_everything_wrong, 0, PREV_HEALTHY,
                  "True/Available False/NodesNotReady False/WorkloadsUnavailable False/Expired "
                  "False/NodesNotReady",
                  CM_COND_HEALTHY,
                  "2 of 3 nodes not ready: node-1 (KubeletNotReady), node-2 (NodeStatusUnknown); 1 of 12 "
                  "kube-system workloads not available: deployment/coredns (0/2 available); the serving "
                  "certificate expired on 2025-12-30" },
                { "readyz before the rest", p_readyz, 0, PREV_NEVER,
                  "False/NotReady True/AllNodesReady True/AllAvailable True/Valid False/NotReady",
                  CM_COND_HEALTHY, NULL },
                { "unknown first: Healthy unknown", p_unknown_then_false, 0, PREV_HEALTHY,
                  "True/Available Unknown/NotChecked False/WorkloadsUnavailable True/Valid "
                  "Unknown/NotChecked",
                  CM_COND_HEALTHY,
                  "the nodes were not listed; 1 of 12 kube-system workloads not available: "
                  "deployment/coredns "
                  "(0/2 available)" },
                { "false first: Healthy false", p_false_then_unknown, 0, PREV_HEALTHY,
                  "True/Available True/AllNodesReady False/WorkloadsUnavailable Unknown/NotChecked "
                  "False/WorkloadsUnavailable",
                  CM_COND_HEALTHY, NULL },
        };
        struct cm_health healthy;
        struct cm_probe_result good = probe_good();

        cm_health_evaluate(NULL, &good, 0, &settings, NOW, &healthy);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cm_health prev = {}, got;
                struct cm_probe_result r = probe_good();
                char summary[512];

                if (cases[i].prev == PREV_HEALTHY)
                        prev = healthy;
                cases[i].probe(&r);
                memset(&got, 0x5a, sizeof(got));
                cm_health_evaluate(&prev, &r, cases[i].failures, &settings, NOW, &got);
                health_summary(&got, summary, sizeof(summary));
                if (!streq(summary, cases[i].expect))
                        fail_msg("case '%s':\n got '%s'\nwant '%s'", cases[i].name, summary,
                                 cases[i].expect);
                if (cases[i].message && !streq(got.cond[cases[i].cond].message, cases[i].message))
                        fail_msg("case '%s': %s message\n got '%s'\nwant '%s'", cases[i].name,
                                 cm_health_cond_type(cases[i].cond), got.cond[cases[i].cond].message,
                                 cases[i].message);
                for (int c = 0; c < _CM_HEALTH_COND_MAX; c++)
                        assert_true(utf8_shown(got.cond[c].message));
                if (cases[i].failures > 0 && cases[i].failures < settings.failure_threshold)
                        assert_memory_equal(&got, &prev, sizeof(got));
        }
}

/* Messages that do not fit are cut at a character and end with an ellipsis. */
static void test_health_long_messages(void **state) {
        struct cm_probe_result r = probe_good();
        struct cm_health h;

        memset(r.nodes_not_ready, 0, sizeof(r.nodes_not_ready));
        for (size_t i = 0; i + 2 < sizeof(r.nodes_not_ready); i += 2)
                memcpy(r.nodes_not_ready + i, "\xc3\xa9", 2);
        memcpy(r.nodes_pressure, r.nodes_not_ready, sizeof(r.nodes_pressure));
        memcpy(r.workloads_not_available, r.nodes_not_ready, sizeof(r.workloads_not_available));
        r.nodes_ready = 0;
        r.workloads_unavailable = 3;
        r.cert_not_after = NOW - 1;
        cm_health_evaluate(NULL, &r, 0, &settings, NOW, &h);
        for (int c = 0; c < _CM_HEALTH_COND_MAX; c++)
                assert_true(utf8_shown(h.cond[c].message));
        assert_true(endswith(h.cond[CM_COND_NODES_READY].message, ELLIPSIS));
        assert_true(endswith(h.cond[CM_COND_HEALTHY].message, ELLIPSIS));
        assert_true(STARTS(h.cond[CM_COND_NODES_READY].message, "3 of 3 nodes not ready: \xc3\xa9"));

        /* A detail that is not text, and one that fills its field without a terminator. */
        r = (struct cm_probe_result){ .outcome = CM_PROBE_ERROR };
        memset(r.detail, 'x', sizeof(r.detail));
        r.detail[3] = '\n';
        r.detail[5] = (char) 0xff;
        cm_health_evaluate(NULL, &r, 1, &(struct cm_health_settings){ .failure_threshold = 0 }, NOW, &h);
        assert_string_equal(h.cond[CM_COND_API_SERVER_AVAILABLE].reason, "Error");
        assert_true(STARTS(h.cond[CM_COND_API_SERVER_AVAILABLE].message, "the probe failed: xxx?x?xx"));
        assert_true(utf8_shown(h.cond[CM_COND_API_SERVER_AVAILABLE].message));

        /* The first failure counts when the threshold is 1 (0 means the same); no settings at all too. */
        r = (struct cm_probe_result){ .outcome = CM_PROBE_UNREACHABLE };
        cm_health_evaluate(NULL, &r, 1, &(struct cm_health_settings){ .failure_threshold = 1 }, NOW, &h);
        assert_string_equal(h.cond[CM_COND_API_SERVER_AVAILABLE].message, "the API server did not answer");
        assert_string_equal(h.cond[CM_COND_HEALTHY].reason, "Unreachable");
        cm_health_evaluate(NULL, &r, 0, NULL, NOW, &h);
        assert_string_equal(h.cond[CM_COND_HEALTHY].reason, "Unreachable");

        /* A certificate beyond what a calendar shows still gives a message. */
        r = probe_good();
        r.cert_not_after = INT64_MAX;
        cm_health_evaluate(NULL, &r, 0, &settings, NOW, &h);
        assert_string_equal(h.cond[CM_COND_CERTIFICATES_VALID].reason, "Valid");
        assert_non_null(strstr(h.cond[CM_COND_CERTIFICATES_VALID].message, "valid until"));
}

static void test_health_changed(void **state) {
        struct cm_probe_result r = probe_good();
        struct cm_health a, b;

        cm_health_evaluate(NULL, &r, 0, &settings, NOW, &a);
        r.latency_usec = 99 * USEC_PER_MSEC;
        r.nodes_total = r.nodes_ready = 4;
        cm_health_evaluate(&a, &r, 0, &settings, NOW, &b);
        assert_string_not_equal(a.cond[CM_COND_NODES_READY].message, b.cond[CM_COND_NODES_READY].message);
        assert_false(cm_health_changed(&a, &b));

        /* Expiring in 12 days and then in 11: the same. */
        p_cert_expiring(&r);
        cm_health_evaluate(&a, &r, 0, &settings, NOW, &a);
        cm_health_evaluate(&a, &r, 0, &settings, NOW + DAY, &b);
        assert_false(cm_health_changed(&a, &b));

        r = probe_good();
        cm_health_evaluate(NULL, &r, 0, &settings, NOW, &a);
        p_readyz(&r);
        cm_health_evaluate(&a, &r, 0, &settings, NOW, &b);
        assert_true(cm_health_changed(&a, &b));

        /* Only a reason changes. */
        b = a;
        (void) cm_strlcpy(b.cond[CM_COND_CERTIFICATES_VALID].reason, "ExpiringSoon",
                          sizeof(b.cond[CM_COND_CERTIFICATES_VALID].reason));
        assert_true(cm_health_changed(&a, &b));
        b = (struct cm_health){};
        assert_true(cm_health_changed(&a, &b));
        a = (struct cm_health){};
        assert_false(cm_health_changed(&a, &b));
}

static void test_health_from_conditions(void **state) {
        struct cm_probe_result r = probe_good();
        _cleanup_free_ char *json = NULL;
        struct cm_health h, back;

        p_nodes_down(&r);
        cm_health_evaluate(NULL, &r, 0, &settings, NOW, &h);

        /* Through the stored conditions and back: the same, other types untouched. */
        json = cm_conditions_set(NULL, "Ready", "True", "Provisioned", "up", 1);
        assert_non_null(json);
        for (int c = 0; c < _CM_HEALTH_COND_MAX; c++) {
                char *next =
                        cm_conditions_set(json, cm_health_cond_type(c), h.cond[c].status, h.cond[c].reason,
                                          h.cond[c].message, (uint64_t) NOW * USEC_PER_SEC);

                assert_non_null(next);
                free(json);
                json = next;
        }
        memset(&back, 0x5a, sizeof(back));
        cm_health_from_conditions(json, &back);
        assert_memory_equal(&back, &h, sizeof(h));
        assert_false(cm_health_changed(&back, &h));

        /* Missing ones stay empty. */
        cm_health_from_conditions(
                "[{\"type\":\"NodesReady\",\"status\":\"False\",\"reason\":\"NoNodes\","
                "\"message\":\"the cluster has no nodes\"},{\"type\":\"Ready\",\"status\":\"True\"}]",
                &back);
        assert_string_equal(back.cond[CM_COND_NODES_READY].status, "False");
        assert_string_equal(back.cond[CM_COND_NODES_READY].reason, "NoNodes");
        assert_string_equal(back.cond[CM_COND_NODES_READY].message, "the cluster has no nodes");
        assert_string_equal(back.cond[CM_COND_HEALTHY].status, "");
        assert_string_equal(back.cond[CM_COND_API_SERVER_AVAILABLE].reason, "");

        /* Anything unusable gives all "". */
        static const char *const junk[] = {
                NULL,
                "",
                "{",
                "{}",
                "null",
                "[1,2]",
                "[{\"type\":\"Healthy\",\"status\":\"Maybe\",\"reason\":\"X\"}]",
                "[{\"type\":\"Healthy\",\"status\":7}]",
                "[{\"type\":5,\"status\":\"True\"}]",
        };
        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                struct cm_health empty = {};

                memset(&back, 0x5a, sizeof(back));
                cm_health_from_conditions(junk[i], &back);
                assert_memory_equal(&back, &empty, sizeof(back));
        }

        /* Long stored texts are cut to the fields. */
        {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT(8192);

                assert_int_equal(
                        strbuf_addl(&sb, "[{\"type\":\"Healthy\",\"status\":\"False\",\"reason\":\""), 0);
                for (int i = 0; i < 100; i++)
                        assert_int_equal(strbuf_addl(&sb, "R"), 0);
                assert_int_equal(strbuf_addl(&sb, "\",\"message\":\""), 0);
                for (int i = 0; i < 1000; i++)
                        assert_int_equal(strbuf_addl(&sb, "\\u00e9"), 0);
                assert_int_equal(strbuf_addl(&sb, "\"}]"), 0);
                cm_health_from_conditions(sb.buf, &back);
                assert_string_equal(back.cond[CM_COND_HEALTHY].status, "False");
                assert_true(strlen(back.cond[CM_COND_HEALTHY].reason) < sizeof(back.cond[0].reason));
                assert_true(utf8_shown(back.cond[CM_COND_HEALTHY].message));
                assert_true(endswith(back.cond[CM_COND_HEALTHY].message, ELLIPSIS));
        }
}

/* ---- TLS material decoded once (tests/testdata/tls: a CA, a client certificate and keys) ---- */

static char *testdata(const char *name, size_t *ret_len) {
        char path[512];
        char *data = NULL;

        assert_true(snprintf(path, sizeof(path), "%s/tls/%s", CM_TESTDATA_DIR, name) < (int) sizeof(path));
        assert_int_equal(cm_read_file(path, 64 * 1024, true, &data, ret_len), 0);
        return data;
}

struct tls_case {
        const char *ca, *cert, *key; /* file names; NULL: none */
        int expect;
        const char *error; /* a part of the reason */
};

static bool handshake(struct cm_tls_identity *id, const char *name, bool want_client_cert);

static void test_tls_identity(void **state) {
        static const char garbage[] =
                "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
        static const struct tls_case cases[] = {
                { "ca.pem", "client.pem", "client.key", 0, NULL },
                { "ca.pem", NULL, NULL, 0, NULL }, /* a token kubeconfig: trust only */
                { "ca.pem", "client.pem", "other.key", -EINVAL, "does not match" },
                { "ca.pem", "client.pem", "encrypted.key", -EINVAL, "encrypted" },
                { "ca.pem", "client.pem", "ca.pem", -EINVAL, "no PEM private key" },
                { "client.key", NULL, NULL, -EINVAL, "certificate-authority-data" },
                { "ca.pem", "client.key", "client.key", -EINVAL, "client-certificate-data" },
                { "garbage", NULL, NULL, -EINVAL, "certificate-authority-data" },
                { "ca.pem", "garbage", "client.key", -EINVAL, "client-certificate-data" },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct tls_case *c = &cases[i];
                struct cm_kubeconfig kc = {};
                struct cm_tls_identity *id = NULL;
                char error[CM_PROBE_TEXT_MAX] = "";
                int r;

                kc.ca_pem = streq(c->ca, "garbage") ? strdup(garbage) : testdata(c->ca, &kc.ca_len);
                if (streq(c->ca, "garbage"))
                        kc.ca_len = strlen(garbage);
                if (c->cert) {
                        kc.cert_pem = streq(c->cert, "garbage") ? strdup(garbage)
                                                                : testdata(c->cert, &kc.cert_len);
                        if (streq(c->cert, "garbage"))
                                kc.cert_len = strlen(garbage);
                        kc.key_pem = testdata(c->key, &kc.key_len);
                }
                r = cm_tls_identity_new(&kc, &id, error, sizeof(error));
                print_message("case %zu: %d %s\n", i, r, error);
                assert_int_equal(r, c->expect);
                if (r == 0) {
                        assert_int_equal(cm_tls_identity_has_client_cert(id), c->cert != NULL);
                        /* The certificate and key go onto the connection when the server asks for them. */
                        assert_true(handshake(id, "127.0.0.1", c->cert != NULL));
                        /* The connection let go of its references: the identity still works. */
                        assert_true(handshake(id, "127.0.0.1", c->cert != NULL));
                } else {
                        assert_null(id);
                        assert_non_null(strstr(error, c->error ? c->error : "(a reason)"));
                        assert_null(strstr(error, "BEGIN")); /* never quotes the input */
                }
                cm_tls_identity_free(id);
                cm_kubeconfig_done(&kc);
        }
}

/* A server context with tests/testdata/tls/server.*, which may demand a client certificate of ca.pem. */
static SSL_CTX *server_ctx(bool want_client_cert) {
        SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
        char path[512];

        assert_non_null(sctx);
        assert_true(snprintf(path, sizeof(path), "%s/tls/server.pem", CM_TESTDATA_DIR) < (int) sizeof(path));
        assert_int_equal(SSL_CTX_use_certificate_file(sctx, path, SSL_FILETYPE_PEM), 1);
        assert_true(snprintf(path, sizeof(path), "%s/tls/server.key", CM_TESTDATA_DIR) < (int) sizeof(path));
        assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, path, SSL_FILETYPE_PEM), 1);
        if (want_client_cert) {
                assert_true(snprintf(path, sizeof(path), "%s/tls/ca.pem", CM_TESTDATA_DIR) <
                            (int) sizeof(path));
                assert_int_equal(SSL_CTX_load_verify_locations(sctx, path, NULL), 1);
                SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
                /* An OpenSSL server resumes sessions with verified clients only within a context. */
                assert_int_equal(SSL_CTX_set_session_id_context(sctx, (const unsigned char *) "cm-test", 7),
                                 1);
        }
        return sctx;
}

/* The probes' shared client context, made once for the whole test program. */
static SSL_CTX *shared_ctx;

static SSL_CTX *client_ctx(void) {
        if (!shared_ctx)
                shared_ctx = cm_tls_client_ctx_new();
        assert_non_null(shared_ctx);
        return shared_ctx;
}

static int shared_ctx_free(void **state) {
        (void) state;
        SSL_CTX_free(shared_ctx);
        shared_ctx = NULL;
        return 0;
}

/*
 * Runs a TLS handshake in memory between a client connection of ctx (with the identity attached for
 * name, when there is one) and a server context, then one byte each way (with TLS 1.3 the server
 * judges the client's certificate, and the client reads the server's session tickets, only then).
 * reused: whether the client resumed a session; peer: whether the client holds the server's
 * certificate at the end.
 */
static bool handshake_full(SSL_CTX *sctx, SSL_CTX *ctx, struct cm_tls_identity *id, const char *name,
                           bool *reused, bool *peer) {
        SSL *c, *s;
        BIO *cb = NULL, *sb = NULL;
        bool ok = false;

        c = SSL_new(ctx);
        s = SSL_new(sctx);
        assert_non_null(c);
        assert_non_null(s);
        if (id)
                assert_int_equal(cm_tls_identity_attach(id, c, name, true), 0);
        assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
        SSL_set_bio(c, cb, cb);
        SSL_set_bio(s, sb, sb);
        SSL_set_connect_state(c);
        SSL_set_accept_state(s);
        for (int i = 0; i < 20; i++) {
                int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);

                if (rc == 1 && rs == 1) {
                        char buf[8];

                        (void) SSL_write(c, "x", 1);
                        ok = SSL_read(s, buf, sizeof(buf)) == 1 && SSL_write(s, "y", 1) == 1 &&
                             SSL_read(c, buf, sizeof(buf)) == 1;
                        break;
                }
                if ((rc <= 0 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) ||
                    (rs <= 0 && SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
                        break;
        }
        if (reused)
                *reused = SSL_session_reused(c) == 1;
        if (peer)
                *peer = SSL_get0_peer_certificate(c) != NULL;
        ERR_clear_error();
        SSL_free(c);
        SSL_free(s);
        return ok;
}

/* One connection of the shared client context with the identity, to a server named 127.0.0.1. */
static bool handshake_on(SSL_CTX *sctx, struct cm_tls_identity *id, bool *reused) {
        return handshake_full(sctx, client_ctx(), id, "127.0.0.1", reused, NULL);
}

static bool handshake(struct cm_tls_identity *id, const char *name, bool want_client_cert) {
        SSL_CTX *sctx = server_ctx(want_client_cert);
        bool ok = handshake_full(sctx, client_ctx(), id, name, NULL, NULL);

        SSL_CTX_free(sctx);
        return ok;
}

static struct cm_tls_identity *identity_of(const char *ca, const char *cert, const char *key) {
        struct cm_kubeconfig kc = {};
        struct cm_tls_identity *id = NULL;

        kc.ca_pem = testdata(ca, &kc.ca_len);
        if (cert) {
                kc.cert_pem = testdata(cert, &kc.cert_len);
                kc.key_pem = testdata(key, &kc.key_len);
        }
        assert_int_equal(cm_tls_identity_new(&kc, &id, NULL, 0), 0);
        cm_kubeconfig_done(&kc);
        return id;
}

/*
 * A connection trusts its own cluster's CA and nothing else, whatever the shared context's store holds,
 * and only for the name it was attached with.
 */
static void test_tls_identity_verifies(void **state) {
        struct cm_tls_identity *own = identity_of("ca.pem", "client.pem", "client.key"),
                               *other = identity_of("other-ca.pem", NULL, NULL),
                               *token = identity_of("ca.pem", NULL, NULL);
        SSL_CTX *sctx = server_ctx(false), *plain;
        char path[512];
        (void) state;

        assert_true(snprintf(path, sizeof(path), "%s/tls/ca.pem", CM_TESTDATA_DIR) < (int) sizeof(path));

        /* Its own CA, and the server asks for the client certificate: both sides verify. */
        assert_true(handshake(own, "127.0.0.1", true));

        /* Without a client certificate the server that demands one refuses. */
        assert_false(handshake(token, "127.0.0.1", true));
        assert_true(handshake(token, "127.0.0.1", false));

        /* The certificate names 127.0.0.1 only: another address, or a host name, is refused. */
        assert_false(handshake(token, "127.0.0.2", false));
        assert_false(handshake(token, "test-server", false));
        assert_false(handshake(token, "localhost", false));

        /* A connection without an identity trusts nothing. */
        assert_false(handshake_full(sctx, client_ctx(), NULL, NULL, NULL, NULL));

        /* Another cluster's CA: refused, even with the server's CA in a client context's own store. */
        plain = cm_tls_client_ctx_new();
        assert_non_null(plain);
        assert_int_equal(SSL_CTX_load_verify_locations(plain, path, NULL), 1);
        assert_false(handshake_full(sctx, plain, other, "127.0.0.1", NULL, NULL));
        SSL_CTX_free(plain);

        /* The control: that store alone would have trusted the server. */
        plain = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(plain, SSL_VERIFY_PEER, NULL);
        assert_int_equal(SSL_CTX_load_verify_locations(plain, path, NULL), 1);
        assert_true(handshake_full(sctx, plain, NULL, NULL, NULL, NULL));
        SSL_CTX_free(plain);

        SSL_CTX_free(sctx);
        cm_tls_identity_free(own);
        cm_tls_identity_free(other);
        cm_tls_identity_free(token);
}

/*
 * The next connection resumes the identity's last session (the server demands a client certificate
 * and accepts the one it saw in the full handshake), only its own identity's, and after
 * forget_session() makes a full handshake again.
 */
static void test_tls_identity_resumes(void **state) {
        struct cm_tls_identity *own = identity_of("ca.pem", "client.pem", "client.key"),
                               *second = identity_of("ca.pem", "client.pem", "client.key");
        SSL_CTX *sctx = server_ctx(true);
        unsigned full = 0, resumed = 0;
        bool reused = true, peer = false;
        (void) state;

        assert_false(cm_tls_identity_has_session(own));
        assert_int_equal(cm_tls_identity_cert_not_after(own), 0);
        assert_true(handshake_full(sctx, client_ctx(), own, "127.0.0.1", &reused, &peer));
        assert_false(reused);
        assert_true(peer);
        assert_true(cm_tls_identity_has_session(own));
        /* tests/testdata/tls/server.pem: notAfter=Nov  1 20:55:29 2126 GMT */
        assert_int_equal(cm_tls_identity_cert_not_after(own), INT64_C(4949240129));
        for (int i = 0; i < 3; i++) {
                reused = false;
                /* The kept session leaves the server's certificate out; its expiry stays known. */
                assert_true(handshake_full(sctx, client_ctx(), own, "127.0.0.1", &reused, &peer));
                assert_true(reused);
                assert_false(peer);
                assert_int_equal(cm_tls_identity_cert_not_after(own), INT64_C(4949240129));
        }
        cm_tls_identity_take_handshakes(own, &full, &resumed);
        assert_int_equal(full, 1);
        assert_int_equal(resumed, 3);
        cm_tls_identity_take_handshakes(own, &full, &resumed);
        assert_int_equal(full + resumed, 0);

        /* Another cluster record with the same credentials has no session of the first's. */
        assert_false(cm_tls_identity_has_session(second));
        assert_true(handshake_on(sctx, second, &reused));
        assert_false(reused);

        /* Forgotten: a full handshake, and then a session again. */
        cm_tls_identity_forget_session(own);
        assert_false(cm_tls_identity_has_session(own));
        assert_true(handshake_on(sctx, own, &reused));
        assert_false(reused);
        assert_true(cm_tls_identity_has_session(own));

        /* Past its maximum age after the full handshake the session is not offered: a full one again. */
        cm_tls_identity_set_session_max_age(own, 0);
        assert_true(handshake_on(sctx, own, &reused));
        assert_false(reused);
        cm_tls_identity_set_session_max_age(own, 3600 * USEC_PER_SEC);
        assert_true(handshake_on(sctx, own, &reused));
        assert_true(reused);
        cm_tls_identity_take_handshakes(own, &full, &resumed);
        assert_int_equal(full, 2); /* the forgotten session's and the aged one's */
        assert_int_equal(resumed, 1);

        /* A server that no longer knows the session (a restart: new ticket keys): a full handshake. */
        SSL_CTX_free(sctx);
        sctx = server_ctx(true);
        assert_true(handshake_on(sctx, own, &reused));
        assert_false(reused);
        assert_true(handshake_on(sctx, own, &reused));
        assert_true(reused);
        cm_tls_identity_take_handshakes(own, &full, &resumed);
        assert_int_equal(full, 1);
        assert_int_equal(resumed, 1);

        SSL_CTX_free(sctx);
        cm_tls_identity_free(own);
        cm_tls_identity_free(second);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_readyz),
                cmocka_unit_test(test_readyz_cap),
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_nodes),
                cmocka_unit_test(test_nodes_paging),
                cmocka_unit_test(test_nodes_odd),
                cmocka_unit_test(test_nodes_malformed),
                cmocka_unit_test(test_nodes_too_large),
                cmocka_unit_test(test_nodes_large_cluster),
                cmocka_unit_test(test_nodes_cap_utf8),
                cmocka_unit_test(test_workloads),
                cmocka_unit_test(test_workloads_malformed),
                cmocka_unit_test(test_kubeconfig_cert),
                cmocka_unit_test(test_kubeconfig_token),
                cmocka_unit_test(test_kubeconfig_refused),
                cmocka_unit_test(test_kubeconfig_limits),
                cmocka_unit_test(test_health_evaluate),
                cmocka_unit_test(test_health_long_messages),
                cmocka_unit_test(test_health_changed),
                cmocka_unit_test(test_health_from_conditions),
                cmocka_unit_test(test_tls_identity),
                cmocka_unit_test(test_tls_identity_resumes),
                cmocka_unit_test(test_tls_identity_verifies),
        };

        return cmocka_run_group_tests(tests, NULL, shared_ctx_free);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash safety of the fs vault with real files and fsync: a child process writes a file in a loop
 * and is killed with SIGKILL at random points, over and over. After every kill each kept version of
 * the file reads back complete (the old or the new content, never a torn one), and at the end no
 * plaintext byte sequence is found anywhere under the state directory.
 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/fileio.h"
#include "base/parse.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "vault/crypto.h"
#include "vault/vault.h"

#define KILLS 220
#define MARKER "PLAINTEXT-CANARY"
#define BODY 24000

/* The run: versions kept, and whether the body's length changes from write to write. */
static unsigned keep = 5;
static bool vary_size;

static size_t body_len(uint64_t c) {
        static const size_t lens[] = { 24000, 3000, 200000, 200, 61000, 9000 };

        return vary_size ? lens[c % ELEMENTSOF(lens)] : BODY;
}

/* The content of write number c: a header naming c, a body derived from c, a trailer naming c. */
static char *content_for(uint64_t c, size_t *ret_n) {
        size_t body = body_len(c);
        struct strbuf sb = STRBUF_INIT(body + 256);
        char *s;

        assert_int_equal(strbuf_addf(&sb, MARKER ":%" PRIu64 ":", c), 0);
        while (sb.len < body)
                assert_int_equal(strbuf_addch(&sb, (char) ('a' + (c + sb.len) % 26)), 0);
        assert_int_equal(strbuf_addf(&sb, ":END:%" PRIu64, c), 0);
        s = strbuf_detach(&sb, ret_n);
        assert_non_null(s);
        return s;
}

static void check_version(struct cm_vault *v, uint64_t version) {
        char *data = NULL, *want;
        size_t n = 0, want_n = 0;
        uint64_t c = 0;
        const char *p;
        int r;

        r = cm_vault_read(v, "cl_crash", "cluster.rkestate", version, &data, &n, NULL);
        if (r < 0)
                fail_msg("version %" PRIu64 " does not read back: %s", version, strerror(-r));
        assert_true(n > sizeof(MARKER) && strneq(data, MARKER ":", sizeof(MARKER)));
        p = data + sizeof(MARKER);
        {
                char num[32];
                size_t l = strcspn(p, ":");
                assert_true(l > 0 && l < sizeof(num));
                memcpy(num, p, l);
                num[l] = 0;
                assert_int_equal(safe_atou64(num, &c), 0);
        }
        want = content_for(c, &want_n);
        assert_int_equal(n, want_n);
        assert_memory_equal(data, want, n);
        free(want);
        cm_vault_data_free(data, n);
}

static _noreturn_ void child_writer(const char *url, const struct cm_keyring *kr, uint64_t start) {
        struct cm_vault *v = NULL;

        if (cm_vault_open(url, kr, keep, &v) < 0)
                _exit(3);
        for (uint64_t c = start;; c++) {
                size_t n = 0;
                char *s = content_for(c, &n);
                if (cm_vault_write(v, "cl_crash", "cluster.rkestate", s, n, -1, NULL) < 0)
                        _exit(4);
                free(s);
        }
}

static void scan_for_marker(const char *path, int *found, size_t *files) {
        DIR *d = opendir(path);
        struct dirent *de;

        if (!d) {
                char *b = NULL;
                size_t n = 0;
                assert_int_equal(cm_read_file(path, 1 << 26, false, &b, &n), 0);
                if (memmem(b, n, MARKER, strlen(MARKER)))
                        (*found)++;
                (*files)++;
                free(b);
                return;
        }
        while ((de = readdir(d))) {
                char p[PATH_MAX];
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_true(cm_snprintf(p, sizeof(p), "%s/%s", path, de->d_name) > 0);
                scan_for_marker(p, found, files);
        }
        closedir(d);
}

static void run_sigkill_writer(void) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *kr = NULL;
        const char *tmp = getenv("TMPDIR");
        char dir[PATH_MAX], url[PATH_MAX + 16];
        uint64_t latest = 0, kills_mid = 0;
        struct cm_vault *v = NULL;
        int found = 0;
        size_t files = 0;

        assert_true(cm_snprintf(dir, sizeof(dir), "%s/cm-vault-crash-XXXXXX", isempty(tmp) ? "/tmp" : tmp) >
                    0);
        assert_non_null(mkdtemp(dir));
        assert_true(cm_snprintf(url, sizeof(url), "%s/state", dir) > 0);
        assert_int_equal(cm_keyring_generate(&kr), 0);
        srand((unsigned) getpid());

        /*
         * At least KILLS kills and 200 completed writes. The delay before a kill is random; on a busy
         * machine a writer may get nothing done before it dies, so the delay grows while no progress
         * is made (bounded: the loop gives up after 20 times KILLS).
         */
        unsigned slow = 0;
        int k;
        for (k = 0; (k < KILLS || latest < 200) && k < 20 * KILLS; k++) {
                struct cm_vault_version *vs = NULL;
                size_t nv = 0;
                uint64_t before = latest;
                int status;
                pid_t pid;

                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0)
                        child_writer(url, kr, latest + 1);
                (void) usleep((useconds_t) ((200 + rand() % 4000) << MIN(slow, 5u)));
                assert_int_equal(kill(pid, SIGKILL), 0);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (!WIFSIGNALED(status))
                        fail_msg("writer exited on its own with %d", WEXITSTATUS(status));

                assert_int_equal(cm_vault_open(url, kr, keep, &v), 0);
                if (cm_vault_list_versions(v, "cl_crash", "cluster.rkestate", &vs, &nv) == 0) {
                        latest = vs[0].version;
                        for (size_t i = 0; i < nv; i++)
                                check_version(v, vs[i].version);
                        check_version(v, 0);
                        free(vs);
                }
                v = cm_vault_close(v);
                kills_mid += latest > before;
                slow = latest > before ? 0 : slow + 1;
        }
        fprintf(stderr, "%d kills, %" PRIu64 " writes, %" PRIu64 " kills after progress\n", k, latest,
                kills_mid);
        assert_true(k >= KILLS);
        assert_true(latest >= 200);

        scan_for_marker(dir, &found, &files);
        assert_true(files > 0);
        assert_int_equal(found, 0);
        {
                char cmd_dir[PATH_MAX + 8];
                /* clean up: the state tree is small */
                assert_int_equal(cm_vault_open(url, kr, keep, &v), 0);
                assert_int_equal(cm_vault_archive(v, "cl_crash", 1), 0);
                assert_int_equal(cm_vault_purge(v, UINT64_MAX), 1);
                v = cm_vault_close(v);
                assert_true(cm_snprintf(cmd_dir, sizeof(cmd_dir), "%s/live", url) > 0);
                (void) rmdir(cmd_dir);
                assert_true(cm_snprintf(cmd_dir, sizeof(cmd_dir), "%s/archive", url) > 0);
                (void) rmdir(cmd_dir);
                (void) rmdir(url);
                (void) rmdir(dir);
        }
}

static void test_sigkill_writer(void **state) {
        (void) state;
        keep = 5;
        vary_size = false;
        run_sigkill_writer();
}

/*
 * One version kept and lengths that change: every write reuses the spare that the prune before
 * made (fs.c), shorter or longer than what it held, and the writer dies anywhere in between.
 */
static void test_sigkill_writer_spares(void **state) {
        (void) state;
        keep = 1;
        vary_size = true;
        run_sigkill_writer();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sigkill_writer),
                cmocka_unit_test(test_sigkill_writer_spares),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/parse.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "vault/crypto.h"
#include "vault/vault.h"

/*
 * The vault conformance suite: the contract of vault/vault.h, checked against every backend.
 *
 * A backend takes part through a factory that makes a fresh, empty vault location and gives its URL,
 * plus raw access to one stored version (get_raw/put_raw) so that the suite can tamper with, truncate
 * and swap stored bytes the way an attacker with access to the volume (or the bucket, or the table)
 * could. Every case opens the URL with cm_vault_open(), so the suite only sees the public interface
 * otherwise. Add a backend by adding a factory to `factories` (create() returning -EOPNOTSUPP skips
 * it, e.g. when no server is configured).
 *
 * Backend-specific checks (fs: modes, no plaintext on disk) live in their own group at the end.
 */

struct vault_factory {
        const char *name;
        int (*create)(char **ret_url, void **ret_handle);
        void (*destroy)(void *handle);
        /* The stored bytes of one version (malloc'd), and replacing them (a truncated or swapped copy). */
        int (*get_raw)(void *handle, const char *owner, const char *name, uint64_t version, uint8_t **ret,
                       size_t *ret_n);
        int (*put_raw)(void *handle, const char *owner, const char *name, uint64_t version, const uint8_t *b,
                       size_t n);
};

/* ---- fs: a new temporary directory per case ---- */

struct fs_tmp {
        char dir[PATH_MAX];
};

static int fs_factory_create(char **ret_url, void **ret_handle) {
        const char *tmp = getenv("TMPDIR");
        struct fs_tmp *t = new0(struct fs_tmp, 1);

        if (!t)
                return -ENOMEM;
        if (cm_snprintf(t->dir, sizeof(t->dir), "%s/cm-vault-XXXXXX", isempty(tmp) ? "/tmp" : tmp) < 0 ||
            !mkdtemp(t->dir)) {
                free(t);
                return -EIO;
        }
        if (asprintf(ret_url, "file://%s/state", t->dir) < 0) {
                free(t);
                return -ENOMEM;
        }
        *ret_handle = t;
        return 0;
}

static int rm_rf(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;

        if (!d)
                return unlink(path);
        while ((de = readdir(d))) {
                char p[PATH_MAX];

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (cm_snprintf(p, sizeof(p), "%s/%s", path, de->d_name) >= 0)
                        (void) rm_rf(p);
        }
        closedir(d);
        return rmdir(path);
}

static void fs_factory_destroy(void *handle) {
        struct fs_tmp *t = handle;

        if (!t)
                return;
        (void) rm_rf(t->dir);
        free(t);
}

static int fs_raw_path(struct fs_tmp *t, const char *owner, const char *name, uint64_t version, char *out,
                       size_t size) {
        char enc[CM_VAULT_NAME_MAX + 1];
        size_t i;

        for (i = 0; name[i]; i++)
                enc[i] = name[i] == '/' ? '%' : name[i];
        enc[i] = 0;
        return cm_snprintf(out, size, "%s/state/live/%s/%s/%016" PRIx64 ".v", t->dir, owner, enc, version);
}

static int fs_get_raw(void *handle, const char *owner, const char *name, uint64_t version, uint8_t **ret,
                      size_t *ret_n) {
        char p[PATH_MAX];
        char *b = NULL;
        int r;

        r = fs_raw_path(handle, owner, name, version, p, sizeof(p));
        if (r < 0)
                return r;
        r = cm_read_file(p, 1 << 26, false, &b, ret_n);
        if (r < 0)
                return r;
        *ret = (uint8_t *) b;
        return 0;
}

static int fs_put_raw(void *handle, const char *owner, const char *name, uint64_t version, const uint8_t *b,
                      size_t n) {
        char p[PATH_MAX], d[PATH_MAX];
        char *slash;
        int r;

        r = fs_raw_path(handle, owner, name, version, p, sizeof(p));
        if (r < 0)
                return r;
        (void) cm_strlcpy(d, p, sizeof(d));
        slash = strrchr(d, '/');
        *slash = 0;
        r = cm_mkdir_p(d, 0700);
        if (r < 0)
                return r;
        return cm_write_file_atomic(p, b, n, 0600);
}

static const struct vault_factory factories[] = {
        { "fs", fs_factory_create, fs_factory_destroy, fs_get_raw, fs_put_raw },
};

/* ---- per-case fixture ---- */

struct fixture {
        const struct vault_factory *f;
        char *url;
        void *handle;
        struct cm_keyring *kr;
        struct cm_vault *v;
};

static const struct vault_factory *current_factory;

static int setup(void **state) {
        struct fixture *fx = new0(struct fixture, 1);
        int r;

        assert_non_null(fx);
        fx->f = current_factory;
        r = fx->f->create(&fx->url, &fx->handle);
        if (r == -EOPNOTSUPP) {
                free(fx);
                skip();
        }
        assert_int_equal(r, 0);
        assert_int_equal(cm_keyring_generate(&fx->kr), 0);
        assert_int_equal(cm_vault_open(fx->url, fx->kr, CM_VAULT_KEEP_DEFAULT, &fx->v), 0);
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        struct fixture *fx = *state;

        if (!fx)
                return 0;
        cm_vault_close(fx->v);
        cm_keyring_free(fx->kr);
        fx->f->destroy(fx->handle);
        free(fx->url);
        free(fx);
        return 0;
}

static void reopen(struct fixture *fx, const struct cm_keyring *kr, unsigned keep) {
        fx->v = cm_vault_close(fx->v);
        assert_int_equal(cm_vault_open(fx->url, kr, keep, &fx->v), 0);
}

static void put(struct fixture *fx, const char *owner, const char *name, const char *data, uint64_t want) {
        uint64_t ver = 0;

        assert_int_equal(cm_vault_write(fx->v, owner, name, data, strlen(data), -1, &ver), 0);
        if (want)
                assert_int_equal(ver, want);
}

static void expect_content(struct cm_vault *v, const char *owner, const char *name, uint64_t version,
                           const char *want) {
        char *data = NULL;
        size_t n = 0;
        uint64_t got = 0;
        int r;

        r = cm_vault_read(v, owner, name, version, &data, &n, &got);
        if (r < 0)
                fail_msg("read %s/%s@%" PRIu64 ": %s", owner, name, version, strerror(-r));
        assert_int_equal(n, strlen(want));
        assert_memory_equal(data, want, n);
        assert_int_equal(data[n], 0);
        if (version)
                assert_int_equal(got, version);
        cm_vault_data_free(data, n);
}

/* A read that must fail: nothing handed over, out-parameters untouched. */
static int read_fails(struct cm_vault *v, const char *owner, const char *name, uint64_t version) {
        char *data = (char *) 0x1;
        size_t n = 77;
        int r;

        r = cm_vault_read(v, owner, name, version, &data, &n, NULL);
        assert_true(r < 0);
        assert_ptr_equal(data, (char *) 0x1);
        assert_int_equal(n, 77);
        return r;
}

/* ---- cases ---- */

static void test_write_read_versions(void **state) {
        struct fixture *fx = *state;

        put(fx, "cl_a", "cluster.rkestate", "first", 1);
        put(fx, "cl_a", "cluster.rkestate", "second", 2);
        put(fx, "cl_a", "cluster.rkestate", "", 3);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 0, "");
        expect_content(fx->v, "cl_a", "cluster.rkestate", 1, "first");
        expect_content(fx->v, "cl_a", "cluster.rkestate", 2, "second");
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 4), -ENOENT);
        assert_int_equal(read_fails(fx->v, "cl_a", "nope", 0), -ENOENT);
        assert_int_equal(read_fails(fx->v, "cl_b", "cluster.rkestate", 0), -ENOENT);

        {
                struct cm_vault_version *vs = NULL;
                size_t n = 0;

                assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "cluster.rkestate", &vs, &n), 0);
                assert_int_equal(n, 3);
                assert_int_equal(vs[0].version, 3);
                assert_int_equal(vs[2].version, 1);
                assert_int_equal(vs[1].size, 6);
                assert_string_equal(vs[0].key_id, fx->kr->keys[0].id);
                assert_true(vs[0].created_usec >= vs[2].created_usec && vs[2].created_usec > 0);
                free(vs);
                assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "none", &vs, &n), -ENOENT);
        }
        /* binary content with NULs */
        {
                uint8_t bin[300];
                char *data = NULL;
                size_t n = 0;

                for (size_t i = 0; i < sizeof(bin); i++)
                        bin[i] = (uint8_t) i;
                assert_int_equal(cm_vault_write(fx->v, "cl_a", "bin", bin, sizeof(bin), -1, NULL), 0);
                assert_int_equal(cm_vault_read(fx->v, "cl_a", "bin", 0, &data, &n, NULL), 0);
                assert_int_equal(n, sizeof(bin));
                assert_memory_equal(data, bin, n);
                cm_vault_data_free(data, n);
        }
}

static void test_cas(void **state) {
        struct fixture *fx = *state;
        uint64_t ver = 0;

        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "a", 1, 1, &ver), -ESTALE);
        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "a", 1, 0, &ver), 0);
        assert_int_equal(ver, 1);
        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "b", 1, 0, &ver), -ESTALE);
        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "b", 1, 2, &ver), -ESTALE);
        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "b", 1, 1, &ver), 0);
        assert_int_equal(ver, 2);
        assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.yml", "c", 1, 1, &ver), -ESTALE);
        expect_content(fx->v, "cl_a", "cluster.yml", 0, "b");
}

static void test_keep_last_n(void **state) {
        struct fixture *fx = *state;
        struct cm_vault_version *vs = NULL;
        size_t n = 0;

        reopen(fx, fx->kr, 3);
        for (int i = 1; i <= 7; i++) {
                char buf[16];
                (void) cm_snprintf(buf, sizeof(buf), "v%d", i);
                put(fx, "cl_a", "cluster.rkestate", buf, (uint64_t) i);
        }
        assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "cluster.rkestate", &vs, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(vs[0].version, 7);
        assert_int_equal(vs[1].version, 6);
        assert_int_equal(vs[2].version, 5);
        free(vs);
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 4), -ENOENT);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 5, "v5");
        expect_content(fx->v, "cl_a", "cluster.rkestate", 0, "v7");
        /* a reopen with a smaller keep prunes on the next write */
        reopen(fx, fx->kr, 1);
        put(fx, "cl_a", "cluster.rkestate", "v8", 8);
        assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "cluster.rkestate", &vs, &n), 0);
        assert_int_equal(n, 1);
        free(vs);
        assert_int_equal(cm_vault_open(fx->url, fx->kr, 0, &(struct cm_vault *){ NULL }), -EINVAL);
}

static void test_list_files_remove(void **state) {
        struct fixture *fx = *state;
        char **names = NULL;
        size_t n = 0;

        put(fx, "cl_a", "kube_config_cluster.yml", "k", 1);
        put(fx, "cl_a", "cluster.yml", "y", 1);
        put(fx, "cl_a", "ssh/ops", "key", 1);
        put(fx, "cl_a", "cluster.rkestate", "s", 1);
        put(fx, "cl_b", "cluster.yml", "other", 1);
        assert_int_equal(cm_vault_list_files(fx->v, "cl_a", &names, &n), 0);
        assert_int_equal(n, 4);
        assert_string_equal(names[0], "cluster.rkestate");
        assert_string_equal(names[1], "cluster.yml");
        assert_string_equal(names[2], "kube_config_cluster.yml");
        assert_string_equal(names[3], "ssh/ops");
        cm_vault_names_free(names, n);
        assert_int_equal(cm_vault_list_files(fx->v, "cl_none", &names, &n), 0);
        assert_int_equal(n, 0);
        cm_vault_names_free(names, n);

        assert_int_equal(cm_vault_remove(fx->v, "cl_a", "ssh/ops"), 0);
        assert_int_equal(cm_vault_remove(fx->v, "cl_a", "ssh/ops"), -ENOENT);
        assert_int_equal(read_fails(fx->v, "cl_a", "ssh/ops", 0), -ENOENT);
        assert_int_equal(cm_vault_list_files(fx->v, "cl_a", &names, &n), 0);
        assert_int_equal(n, 3);
        cm_vault_names_free(names, n);
        /* a file made again after a remove starts over */
        put(fx, "cl_a", "ssh/ops", "new", 1);
        expect_content(fx->v, "cl_a", "ssh/ops", 0, "new");
        expect_content(fx->v, "cl_b", "cluster.yml", 0, "other");
}

static void test_archive_purge(void **state) {
        struct fixture *fx = *state;
        struct cm_vault_archive *as = NULL;
        char **names = NULL;
        size_t n = 0;

        put(fx, "cl_a", "cluster.rkestate", "a", 1);
        put(fx, "cl_b", "cluster.rkestate", "b", 1);
        assert_int_equal(cm_vault_archive(fx->v, "cl_none", 1000), -ENOENT);
        assert_int_equal(cm_vault_archive(fx->v, "cl_a", 1000), 0);
        assert_int_equal(cm_vault_archive(fx->v, "cl_b", 2000), 0);
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 0), -ENOENT);
        assert_int_equal(cm_vault_list_files(fx->v, "cl_a", &names, &n), 0);
        assert_int_equal(n, 0);
        cm_vault_names_free(names, n);
        assert_int_equal(cm_vault_list_archives(fx->v, &as, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(as[0].owner, "cl_a");
        assert_int_equal(as[0].archived_usec, 1000);
        assert_string_equal(as[1].owner, "cl_b");
        free(as);
        /* the owner can be used again (a new cluster of the same id will not happen, but an env will) */
        put(fx, "cl_a", "cluster.rkestate", "again", 1);

        assert_int_equal(cm_vault_purge(fx->v, 1000), 0);
        assert_int_equal(cm_vault_purge(fx->v, 1001), 1);
        assert_int_equal(cm_vault_list_archives(fx->v, &as, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(as[0].owner, "cl_b");
        free(as);
        assert_int_equal(cm_vault_purge(fx->v, UINT64_MAX), 1);
        assert_int_equal(cm_vault_list_archives(fx->v, &as, &n), 0);
        assert_int_equal(n, 0);
        free(as);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 0, "again");
}

static void test_name_validation(void **state) {
        struct fixture *fx = *state;
        static const char *const bad_names[] = {
                "",
                "/etc/passwd",
                "..",
                "../x",
                "a/../b",
                "a/..",
                ".",
                "./a",
                "a/./b",
                "a//b",
                "a/",
                "/a",
                ".hidden",
                "a/.hidden",
                "a b",
                "a\\b",
                "a%b",
                "é",
                "a\nb",
                "a:b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        };
        static const char *const good_names[] = { "cluster.yml", "cluster.rkestate",
                                                  "ssh/ops",     "a-b_c.d",
                                                  "a/b/c",       "kube_config_cluster.yml",
                                                  "x..y" };
        static const char *const bad_owners[] = { "", ".x", "a/b", "..", "a b", "a@b", "a%b" };
        char *data = NULL;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                assert_false(cm_vault_name_valid(bad_names[i]));
                assert_int_equal(cm_vault_write(fx->v, "cl_a", bad_names[i], "x", 1, -1, NULL), -EINVAL);
                assert_int_equal(cm_vault_read(fx->v, "cl_a", bad_names[i], 0, &data, &n, NULL), -EINVAL);
                assert_int_equal(cm_vault_remove(fx->v, "cl_a", bad_names[i]), -EINVAL);
        }
        for (size_t i = 0; i < ELEMENTSOF(good_names); i++) {
                assert_true(cm_vault_name_valid(good_names[i]));
                put(fx, "cl_a", good_names[i], good_names[i], 1);
                expect_content(fx->v, "cl_a", good_names[i], 0, good_names[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_owners); i++) {
                assert_false(cm_vault_owner_valid(bad_owners[i]));
                assert_int_equal(cm_vault_write(fx->v, bad_owners[i], "x", "x", 1, -1, NULL), -EINVAL);
                assert_int_equal(cm_vault_archive(fx->v, bad_owners[i], 1), -EINVAL);
        }
        assert_true(cm_vault_owner_valid("env:default"));
        put(fx, "env:default", "ssh/ops", "k", 1);
        {
                char owner[CM_VAULT_OWNER_MAX + 1];
                assert_int_equal(cm_vault_env_owner("prod", owner, sizeof(owner)), 0);
                assert_string_equal(owner, "env:prod");
        }
}

/* Flips every bit... of every byte of a stored version: every read fails and hands nothing over. */
static void test_tamper_every_byte(void **state) {
        struct fixture *fx = *state;
        uint8_t *raw = NULL;
        size_t n = 0;

        put(fx, "cl_a", "cluster.rkestate", "SECRET-CA-KEY", 1);
        assert_int_equal(fx->f->get_raw(fx->handle, "cl_a", "cluster.rkestate", 1, &raw, &n), 0);
        for (size_t i = 0; i < n; i++) {
                static const uint8_t flips[] = { 0x01, 0x80, 0xff };
                for (size_t k = 0; k < ELEMENTSOF(flips); k++) {
                        int r;

                        raw[i] ^= flips[k];
                        assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "cluster.rkestate", 1, raw, n),
                                         0);
                        r = read_fails(fx->v, "cl_a", "cluster.rkestate", 1);
                        if (r != -EBADMSG && r != -ENOKEY && r != -EKEYREJECTED)
                                fail_msg("byte %zu: %s", i, strerror(-r));
                        raw[i] ^= flips[k];
                }
        }
        /* truncated at every length, and extended */
        for (size_t len = 0; len < n; len++) {
                assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "cluster.rkestate", 1, raw, len), 0);
                assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 1), -EBADMSG);
        }
        {
                uint8_t *longer = malloc(n + 1);
                assert_non_null(longer);
                memcpy(longer, raw, n);
                longer[n] = 0;
                assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "cluster.rkestate", 1, longer, n + 1),
                                 0);
                assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 1), -EBADMSG);
                free(longer);
        }
        assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "cluster.rkestate", 1, raw, n), 0);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 1, "SECRET-CA-KEY");
        free(raw);
}

/* A stored version copied to another owner, name or version does not open. */
static void test_swapped(void **state) {
        struct fixture *fx = *state;
        uint8_t *raw = NULL;
        size_t n = 0;

        put(fx, "cl_a", "cluster.rkestate", "A1", 1);
        put(fx, "cl_a", "cluster.rkestate", "A2", 2);
        put(fx, "cl_b", "cluster.rkestate", "B1", 1);
        put(fx, "cl_a", "kube_config_cluster.yml", "K1", 1);
        assert_int_equal(fx->f->get_raw(fx->handle, "cl_a", "cluster.rkestate", 1, &raw, &n), 0);
        /* to another cluster */
        assert_int_equal(fx->f->put_raw(fx->handle, "cl_b", "cluster.rkestate", 1, raw, n), 0);
        assert_int_equal(read_fails(fx->v, "cl_b", "cluster.rkestate", 0), -EKEYREJECTED);
        /* to another name */
        assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "kube_config_cluster.yml", 1, raw, n), 0);
        assert_int_equal(read_fails(fx->v, "cl_a", "kube_config_cluster.yml", 0), -EKEYREJECTED);
        /* to another version (an old version replayed as the newest) */
        assert_int_equal(fx->f->put_raw(fx->handle, "cl_a", "cluster.rkestate", 2, raw, n), 0);
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 0), -EBADMSG);
        free(raw);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 1, "A1");
}

static void test_wrong_key(void **state) {
        struct fixture *fx = *state;
        _cleanup_(cm_keyring_freep) struct cm_keyring *other = NULL, *same_id = NULL;

        put(fx, "cl_a", "cluster.rkestate", "secret", 1);
        assert_int_equal(cm_keyring_generate(&other), 0);
        reopen(fx, other, CM_VAULT_KEEP_DEFAULT);
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 0), -ENOKEY);
        /* the same id with other key bytes */
        assert_int_equal(cm_keyring_dup(other, &same_id), 0);
        memcpy(same_id->keys[0].id, fx->kr->keys[0].id, sizeof(same_id->keys[0].id));
        reopen(fx, same_id, CM_VAULT_KEEP_DEFAULT);
        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", 0), -EKEYREJECTED);
        /* list_versions needs no key */
        {
                struct cm_vault_version *vs = NULL;
                size_t n = 0;
                assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "cluster.rkestate", &vs, &n), 0);
                assert_int_equal(n, 1);
                free(vs);
        }
        reopen(fx, fx->kr, CM_VAULT_KEEP_DEFAULT);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 0, "secret");
}

/* Writes owners × files × versions; the content names its place. */
static void fill(struct fixture *fx, int owners, int files, int versions) {
        for (int o = 0; o < owners; o++)
                for (int f = 0; f < files; f++)
                        for (int v = 1; v <= versions; v++) {
                                char owner[32], name[32], data[64];
                                (void) cm_snprintf(owner, sizeof(owner), "cl_%d", o);
                                (void) cm_snprintf(name, sizeof(name), "f%d/state", f);
                                (void) cm_snprintf(data, sizeof(data), "%s %s v%d", owner, name, v);
                                put(fx, owner, name, data, (uint64_t) v);
                        }
}

static void check_fill(struct fixture *fx, int owners, int files, int versions) {
        for (int o = 0; o < owners; o++)
                for (int f = 0; f < files; f++)
                        for (int v = 1; v <= versions; v++) {
                                char owner[32], name[32], data[64];
                                (void) cm_snprintf(owner, sizeof(owner), "cl_%d", o);
                                (void) cm_snprintf(name, sizeof(name), "f%d/state", f);
                                (void) cm_snprintf(data, sizeof(data), "%s %s v%d", owner, name, v);
                                expect_content(fx->v, owner, name, (uint64_t) v, data);
                        }
}

static void key_file_path(struct fixture *fx, char *out, size_t size, const char *leaf) {
        const char *u = fx->url;
        /* the key file lives next to the vault location of the fs factory; other backends use TMPDIR */
        if (strneq(u, "file://", 7))
                (void) cm_snprintf(out, size, "%s.%s", u + 7, leaf);
        else
                (void) cm_snprintf(out, size, "%s/cm-vault-%d-%s", getenv("TMPDIR") ?: "/tmp",
                                   (int) getpid(), leaf);
}

static void test_rotation(void **state) {
        struct fixture *fx = *state;
        _cleanup_(cm_keyring_freep) struct cm_keyring *after = NULL;
        char key_file[PATH_MAX], key_id[CM_KEK_ID_MAX + 1];
        uint8_t *before = NULL, *raw = NULL;
        size_t before_n = 0, raw_n = 0, rewrapped = 0;

        fill(fx, 3, 2, 3);
        assert_int_equal(cm_vault_archive(fx->v, "cl_2", 5), 0);
        key_file_path(fx, key_file, sizeof(key_file), "key");
        assert_int_equal(cm_keyring_save(key_file, fx->kr), 0);
        assert_int_equal(fx->f->get_raw(fx->handle, "cl_0", "f0/state", 1, &before, &before_n), 0);
        fx->v = cm_vault_close(fx->v);

        assert_int_equal(cm_vault_rotate_key(fx->url, key_file, NULL, false, &rewrapped, key_id), 0);
        assert_int_equal(rewrapped, 3 * 2 * 3);
        assert_int_equal(cm_keyring_load(key_file, &after), 0);
        assert_int_equal(after->n, 1);
        assert_string_equal(after->keys[0].id, key_id);
        assert_string_not_equal(key_id, fx->kr->keys[0].id);

        /* readable with the new key only; the content bytes were not rewritten */
        assert_int_equal(cm_vault_open(fx->url, after, CM_VAULT_KEEP_DEFAULT, &fx->v), 0);
        check_fill(fx, 2, 2, 3);
        assert_int_equal(fx->f->get_raw(fx->handle, "cl_0", "f0/state", 1, &raw, &raw_n), 0);
        assert_int_equal(raw_n - before_n, strlen(key_id) - strlen(fx->kr->keys[0].id));
        /* content nonce, ciphertext and tag are the file's tail */
        assert_memory_equal(raw + raw_n - 40, before + before_n - 40, 40);
        free(raw);
        free(before);
        reopen(fx, fx->kr, CM_VAULT_KEEP_DEFAULT);
        assert_int_equal(read_fails(fx->v, "cl_0", "f0/state", 1), -ENOKEY);
        /* archived state was re-wrapped too: nothing still needs the old key */
        reopen(fx, after, CM_VAULT_KEEP_DEFAULT);
        assert_int_equal(cm_vault_rewrap(fx->v, 0), 0);
        (void) unlink(key_file);
}

/* A rotation stopped after K files: everything reads with the keyring on disk; the next run finishes. */
static void test_rotation_interrupted(void **state) {
        struct fixture *fx = *state;
        _cleanup_(cm_keyring_freep) struct cm_keyring *fresh = NULL, *both = NULL, *disk = NULL;
        char key_file[PATH_MAX], new_key_file[PATH_MAX];
        size_t rewrapped = 0;

        fill(fx, 2, 3, 2);
        key_file_path(fx, key_file, sizeof(key_file), "key");
        key_file_path(fx, new_key_file, sizeof(new_key_file), "newkey");
        assert_int_equal(cm_keyring_generate(&fresh), 0);
        assert_int_equal(cm_keyring_save(new_key_file, fresh), 0);
        /* steps 1 and (part of) 2 of cm_vault_rotate_key, then a "crash" */
        assert_int_equal(cm_keyring_dup(fx->kr, &both), 0);
        assert_int_equal(cm_keyring_push_current(both, &fresh->keys[0]), 0);
        assert_int_equal(cm_keyring_save(key_file, both), 0);
        reopen(fx, both, CM_VAULT_KEEP_DEFAULT);
        for (size_t k = 1; k <= 5; k++)
                assert_int_equal(cm_vault_rewrap(fx->v, 1), 1);
        fx->v = cm_vault_close(fx->v);

        assert_int_equal(cm_keyring_load(key_file, &disk), 0);
        assert_int_equal(cm_vault_open(fx->url, disk, CM_VAULT_KEEP_DEFAULT, &fx->v), 0);
        check_fill(fx, 2, 3, 2);
        /* the old key alone no longer opens everything, the new one alone not yet */
        {
                size_t ok_old = 0, ok_new = 0;
                for (int pass = 0; pass < 2; pass++) {
                        reopen(fx, pass == 0 ? fx->kr : fresh, CM_VAULT_KEEP_DEFAULT);
                        for (int o = 0; o < 2; o++)
                                for (int f = 0; f < 3; f++)
                                        for (uint64_t v = 1; v <= 2; v++) {
                                                char owner[16], name[16], *data = NULL;
                                                size_t n = 0;
                                                (void) cm_snprintf(owner, sizeof(owner), "cl_%d", o);
                                                (void) cm_snprintf(name, sizeof(name), "f%d/state", f);
                                                if (cm_vault_read(fx->v, owner, name, v, &data, &n, NULL) ==
                                                    0) {
                                                        *(pass == 0 ? &ok_old : &ok_new) += 1;
                                                        cm_vault_data_free(data, n);
                                                }
                                        }
                }
                assert_int_equal(ok_new, 5);
                assert_int_equal(ok_old, 12 - 5);
        }
        fx->v = cm_vault_close(fx->v);
        /* running the rotation again with the same new key finishes the job */
        assert_int_equal(cm_vault_rotate_key(fx->url, key_file, new_key_file, false, &rewrapped, NULL), 0);
        assert_int_equal(rewrapped, 7);
        cm_keyring_free(disk);
        disk = NULL;
        assert_int_equal(cm_keyring_load(key_file, &disk), 0);
        assert_int_equal(disk->n, 1);
        assert_string_equal(disk->keys[0].id, fresh->keys[0].id);
        assert_int_equal(cm_vault_open(fx->url, disk, CM_VAULT_KEEP_DEFAULT, &fx->v), 0);
        check_fill(fx, 2, 3, 2);
        (void) unlink(key_file);
        (void) unlink(new_key_file);
}

struct cas_arg {
        struct cm_vault *v;
        int increments;
        int stale;
};

static void *cas_thread(void *p) {
        struct cas_arg *a = p;

        for (int i = 0; i < a->increments;) {
                char *data = NULL, buf[32];
                size_t n = 0;
                uint64_t ver = 0;
                unsigned val = 0;
                int r;

                r = cm_vault_read(a->v, "cl_a", "counter", 0, &data, &n, &ver);
                if (r < 0 || safe_atou(data, &val) < 0)
                        return (void *) (intptr_t) -1;
                cm_vault_data_free(data, n);
                (void) cm_snprintf(buf, sizeof(buf), "%u", val + 1);
                r = cm_vault_write(a->v, "cl_a", "counter", buf, strlen(buf), (int64_t) ver, NULL);
                if (r == -ESTALE) {
                        a->stale++;
                        continue;
                }
                if (r < 0)
                        return (void *) (intptr_t) -2;
                i++;
        }
        return NULL;
}

static void test_concurrent_cas(void **state) {
        struct fixture *fx = *state;
        pthread_t t[6];
        struct cas_arg args[6];
        uint64_t ver = 0;

        put(fx, "cl_a", "counter", "0", 1);
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                args[i] = (struct cas_arg){ fx->v, 25, 0 };
                assert_int_equal(pthread_create(&t[i], NULL, cas_thread, &args[i]), 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                void *ret;
                assert_int_equal(pthread_join(t[i], &ret), 0);
                assert_null(ret);
        }
        {
                char *data = NULL;
                size_t n = 0;
                assert_int_equal(cm_vault_read(fx->v, "cl_a", "counter", 0, &data, &n, &ver), 0);
                assert_string_equal(data, "150");
                assert_int_equal(ver, 151);
                cm_vault_data_free(data, n);
        }
}

static void test_keyring_format(void **state) {
        _cleanup_(cm_keyring_freep) struct cm_keyring *a = NULL, *b = NULL, *c = NULL;
        struct cm_keyring *bad = NULL;
        char *text = NULL;
        size_t n = 0;

        (void) state;
        assert_int_equal(cm_keyring_generate(&a), 0);
        assert_int_equal(cm_keyring_generate(&b), 0);
        assert_int_equal(cm_keyring_push_current(a, &b->keys[0]), 0);
        assert_int_equal(cm_keyring_push_current(a, &b->keys[0]), -EEXIST);
        assert_int_equal(cm_keyring_format(a, &text, &n), 0);
        assert_int_equal(cm_keyring_parse(text, n, &c), 0);
        assert_int_equal(c->n, 2);
        assert_string_equal(c->keys[0].id, b->keys[0].id);
        assert_memory_equal(c->keys[1].key, a->keys[1].key, CM_KEK_LEN);
        cm_erase_and_free(text);

        static const char *const bad_texts[] = {
                "",
                "# only a comment\n",
                "k1\n",
                "k1 notbase64!\n",
                "k1 AAAA\n",
                "bad/id AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "k1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nk1 "
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_texts); i++) {
                assert_true(cm_keyring_parse(bad_texts[i], strlen(bad_texts[i]), &bad) < 0);
                assert_null(bad);
        }
        {
                static const char ok[] = "  # c\n\nk1  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=  \r\n";
                assert_int_equal(cm_keyring_parse(ok, sizeof(ok) - 1, &bad), 0);
        }
        assert_string_equal(bad->keys[0].id, "k1");
        cm_keyring_free(bad);
}

/* Content of version v in the size cases: bytes derived from v, of a length derived from v. */
static size_t sized_len(uint64_t v) {
        static const size_t lens[] = { 70000, 5, 20000, 0, 140000, 300, 4096, 4097, 1, 9000, 65543, 131072 };
        return lens[v % ELEMENTSOF(lens)];
}

static uint8_t *sized_content(uint64_t v, size_t *ret_n) {
        size_t n = sized_len(v);
        uint8_t *b = malloc(n + 1);

        assert_non_null(b);
        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t) (v * 131 + i * 7 + (i >> 8));
        *ret_n = n;
        return b;
}

/* 0 when version (0: the newest) reads back as sized_content of the version read, else the error. */
static int check_sized(struct cm_vault *v, const char *owner, const char *name, uint64_t version,
                       uint64_t *ret_version) {
        char *data = NULL;
        uint8_t *want;
        size_t n = 0, want_n = 0;
        uint64_t got = 0;
        int r;

        r = cm_vault_read(v, owner, name, version, &data, &n, &got);
        if (r < 0)
                return r;
        want = sized_content(got, &want_n);
        r = (version == 0 || got == version) && n == want_n && memcmp(data, want, n) == 0 ? 0 : -EPROTO;
        free(want);
        cm_vault_data_free(data, n);
        if (r == 0 && ret_version)
                *ret_version = got;
        return r;
}

/* Versions of every size, growing and shrinking, with few kept: the older ones give way, none is hurt. */
static void test_keep_sizes(void **state) {
        struct fixture *fx = *state;

        reopen(fx, fx->kr, 2);
        for (uint64_t ver = 1; ver <= 30; ver++) {
                struct cm_vault_version *vs = NULL;
                uint64_t got = 0;
                uint8_t *b;
                size_t n = 0;

                b = sized_content(ver, &n);
                assert_int_equal(
                        cm_vault_write(fx->v, "cl_a", "cluster.rkestate", b, n, (int64_t) ver - 1, &got), 0);
                free(b);
                assert_int_equal(got, ver);
                assert_int_equal(check_sized(fx->v, "cl_a", "cluster.rkestate", 0, &got), 0);
                assert_int_equal(got, ver);
                assert_int_equal(check_sized(fx->v, "cl_a", "cluster.rkestate", ver, NULL), 0);
                if (ver > 1)
                        assert_int_equal(check_sized(fx->v, "cl_a", "cluster.rkestate", ver - 1, NULL), 0);
                if (ver > 2)
                        assert_int_equal(read_fails(fx->v, "cl_a", "cluster.rkestate", ver - 2), -ENOENT);
                assert_int_equal(cm_vault_list_versions(fx->v, "cl_a", "cluster.rkestate", &vs, &n), 0);
                assert_int_equal(n, MIN(ver, 2));
                for (size_t i = 0; i < n; i++) {
                        assert_int_equal(vs[i].version, ver - i);
                        assert_int_equal(vs[i].size, sized_len(ver - i));
                }
                free(vs);
        }
}

struct reader_arg {
        struct cm_vault *v;
        const bool *done;
        unsigned reads, old_gone, retried;
        int error; /* the first unexpected result */
};

/*
 * Reads while a writer replaces the file (keep 1: every write prunes the version before): the newest
 * always reads back whole (or, rarely, gives up with -EAGAIN after being overtaken again and again),
 * the one before it whole or -ENOENT, a listing succeeds or finds nothing left; never anything else.
 */
static void *reader_thread(void *p) {
        struct reader_arg *a = p;

        while (!__atomic_load_n(a->done, __ATOMIC_ACQUIRE) && a->error == 0) {
                struct cm_vault_version *vs = NULL;
                uint64_t got = 0;
                size_t n = 0;
                int r;

                r = check_sized(a->v, "cl_a", "cluster.rkestate", 0, &got);
                if (r == -EAGAIN) {
                        a->retried++;
                        continue;
                }
                if (r < 0) {
                        a->error = r;
                        break;
                }
                a->reads++;
                if (got > 1) {
                        r = check_sized(a->v, "cl_a", "cluster.rkestate", got - 1, NULL);
                        if (r == -ENOENT)
                                a->old_gone++;
                        else if (r < 0) {
                                a->error = r;
                                break;
                        }
                }
                r = cm_vault_list_versions(a->v, "cl_a", "cluster.rkestate", &vs, &n);
                if (r == 0) {
                        for (size_t i = 0; i < n; i++)
                                if (vs[i].size != sized_len(vs[i].version))
                                        r = -EPROTO;
                        free(vs);
                }
                if (r < 0 && r != -ENOENT) {
                        a->error = r;
                        break;
                }
        }
        return NULL;
}

static void test_concurrent_readers(void **state) {
        struct fixture *fx = *state;
        struct reader_arg args[3];
        pthread_t t[ELEMENTSOF(args)];
        bool done = false;

        reopen(fx, fx->kr, 1);
        for (uint64_t ver = 1; ver <= 2; ver++) {
                size_t n = 0;
                uint8_t *b = sized_content(ver, &n);
                assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.rkestate", b, n, -1, NULL), 0);
                free(b);
        }
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                args[i] = (struct reader_arg){ .v = fx->v, .done = &done };
                assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &args[i]), 0);
        }
        for (uint64_t ver = 3; ver <= 150; ver++) {
                size_t n = 0;
                uint8_t *b = sized_content(ver, &n);
                assert_int_equal(cm_vault_write(fx->v, "cl_a", "cluster.rkestate", b, n, -1, NULL), 0);
                free(b);
        }
        __atomic_store_n(&done, true, __ATOMIC_RELEASE);
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                if (args[i].error != 0)
                        fail_msg("reader %zu: %s", i, strerror(-args[i].error));
                fprintf(stderr, "reader %zu: %u reads, %u of the version before gone, %u given up\n", i,
                        args[i].reads, args[i].old_gone, args[i].retried);
                assert_true(args[i].reads > 0);
        }
        assert_int_equal(check_sized(fx->v, "cl_a", "cluster.rkestate", 150, NULL), 0);
}

/* ---- fs-specific ---- */

static void scan_tree(const char *path, const char *marker, int *found, int *bad_mode) {
        DIR *d = opendir(path);
        struct dirent *de;
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        if (!d) {
                char *b = NULL;
                size_t n = 0;

                if ((st.st_mode & 0777) != 0600)
                        (*bad_mode)++;
                assert_int_equal(cm_read_file(path, 1 << 26, false, &b, &n), 0);
                if (memmem(b, n, marker, strlen(marker)))
                        (*found)++;
                free(b);
                return;
        }
        if ((st.st_mode & 0777) != 0700)
                (*bad_mode)++;
        while ((de = readdir(d))) {
                char p[PATH_MAX];
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_true(cm_snprintf(p, sizeof(p), "%s/%s", path, de->d_name) > 0);
                scan_tree(p, marker, found, bad_mode);
        }
        closedir(d);
}

static void test_fs_modes_no_plaintext(void **state) {
        struct fixture *fx = *state;
        int found = 0, bad_mode = 0;

        (void) umask(0022);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-ca-key", 1);
        put(fx, "cl_a", "ssh/ops", "PLAINTEXT-CANARY-ssh", 1);
        put(fx, "env:default", "ssh/ops", "PLAINTEXT-CANARY-env", 1);
        assert_int_equal(cm_vault_archive(fx->v, "cl_a", 7), 0);
        scan_tree(fx->url + 7, "PLAINTEXT-CANARY", &found, &bad_mode);
        assert_int_equal(found, 0);
        assert_int_equal(bad_mode, 0);
}

static void file_path(struct fixture *fx, const char *leaf, char *out, size_t size) {
        struct fs_tmp *t = fx->handle;

        assert_true(cm_snprintf(out, size, "%s/state/live/cl_a/cluster.rkestate/%s", t->dir, leaf) > 0);
}

static ino_t inode_of(const char *path) {
        struct stat st;

        assert_int_equal(lstat(path, &st), 0);
        return st.st_ino;
}

/*
 * Pruned versions become spares that later writes reuse (fs.c): a spare has its data key wiped, and a
 * spare.ready left in any state (garbage, longer than the next version, a second name of a version, a
 * symlink) never hurts a version or anything outside.
 */
static void test_fs_spares(void **state) {
        struct fixture *fx = *state;
        struct fs_tmp *t = fx->handle;
        char ready[PATH_MAX], pending[PATH_MAX], v4[PATH_MAX], outside[PATH_MAX];
        int found = 0, bad_mode = 0;
        uint8_t *raw = NULL;
        char *b = NULL;
        size_t n = 0;

        file_path(fx, "spare.ready", ready, sizeof(ready));
        file_path(fx, "spare.pending", pending, sizeof(pending));
        file_path(fx, "0000000000000004.v", v4, sizeof(v4));
        reopen(fx, fx->kr, 2);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v1", 1);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v2", 2);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v3", 3);
        /* version 1 was pruned into spare.pending: its header with the wrapped data key is zeros */
        assert_int_equal(cm_read_file(pending, 1 << 20, false, &b, &n), 0);
        assert_true(n >= CM_SEALED_OVERHEAD_MAX);
        for (size_t i = 0; i < CM_SEALED_OVERHEAD_MAX; i++)
                assert_int_equal(b[i], 0);
        free(b);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v4", 4);
        assert_int_equal(access(ready, F_OK), 0);

        /* a second name of version 4 (a torn rename): written to, it would destroy version 4 */
        assert_int_equal(unlink(ready), 0);
        assert_int_equal(link(v4, ready), 0);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v5", 5);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 4, "PLAINTEXT-CANARY-v4");
        assert_true(inode_of(ready) != inode_of(v4));

        /* garbage longer than the next version (a writer killed while writing) */
        raw = malloc(100000);
        assert_non_null(raw);
        memset(raw, 0x5a, 100000);
        assert_int_equal(cm_write_file_atomic(ready, raw, 100000, 0600), 0);
        free(raw);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v6", 6);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 6, "PLAINTEXT-CANARY-v6");
        expect_content(fx->v, "cl_a", "cluster.rkestate", 5, "PLAINTEXT-CANARY-v5");

        /* a symlink to a file elsewhere: replaced, the file left alone */
        assert_true(cm_snprintf(outside, sizeof(outside), "%s/outside", t->dir) > 0);
        assert_int_equal(cm_write_file_atomic(outside, "untouched", 9, 0600), 0);
        (void) unlink(ready);
        assert_int_equal(symlink(outside, ready), 0);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v7", 7);
        put(fx, "cl_a", "cluster.rkestate", "PLAINTEXT-CANARY-v8", 8);
        expect_content(fx->v, "cl_a", "cluster.rkestate", 7, "PLAINTEXT-CANARY-v7");
        expect_content(fx->v, "cl_a", "cluster.rkestate", 0, "PLAINTEXT-CANARY-v8");
        assert_int_equal(cm_read_file(outside, 1 << 20, false, &b, &n), 0);
        assert_string_equal(b, "untouched");
        free(b);

        scan_tree(fx->url + 7, "PLAINTEXT-CANARY", &found, &bad_mode);
        assert_int_equal(found, 0);
        assert_int_equal(bad_mode, 0);
        /* remove takes the spares along */
        assert_int_equal(cm_vault_remove(fx->v, "cl_a", "cluster.rkestate"), 0);
        assert_int_equal(access(ready, F_OK), -1);
}

static void test_fs_open(void **state) {
        struct fixture *fx = *state;
        struct cm_vault *v = NULL;

        assert_int_equal(cm_vault_open("s3://bucket/x", fx->kr, 20, &v), -EPROTONOSUPPORT);
        assert_null(v);
        put(fx, "cl_a", "cluster.yml", "same", 1);
        assert_int_equal(cm_vault_open(fx->url + 7, fx->kr, 20, &v), 0); /* a plain path */
        expect_content(v, "cl_a", "cluster.yml", 0, "same");
        cm_vault_close(v);
}

#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                CASE(test_write_read_versions),
                CASE(test_cas),
                CASE(test_keep_last_n),
                CASE(test_list_files_remove),
                CASE(test_archive_purge),
                CASE(test_name_validation),
                CASE(test_tamper_every_byte),
                CASE(test_swapped),
                CASE(test_wrong_key),
                CASE(test_rotation),
                CASE(test_rotation_interrupted),
                CASE(test_concurrent_cas),
                CASE(test_keep_sizes),
                CASE(test_concurrent_readers),
        };
        const struct CMUnitTest fs_tests[] = {
                cmocka_unit_test(test_keyring_format),
                CASE(test_fs_modes_no_plaintext),
                CASE(test_fs_spares),
                CASE(test_fs_open),
        };
        int failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(factories); i++) {
                current_factory = &factories[i];
                fprintf(stderr, "vault backend: %s\n", factories[i].name);
                failed += _cmocka_run_group_tests(factories[i].name, tests, ELEMENTSOF(tests), NULL, NULL);
        }
        current_factory = &factories[0];
        failed += cmocka_run_group_tests_name("fs", fs_tests, NULL, NULL);
        return failed;
}

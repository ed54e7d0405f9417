/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fs vault backend: a directory (the volume an EBS disk is mounted on).
 *
 *   <root>/live/<owner>/<file>/<version as 16 hex digits>.v      sealed versions (0600)
 *   <root>/archive/<owner>@<archived usec as 16 hex digits>/...   archived owners, same layout
 *
 * <file> is the file name with '/' written as '%' (never part of a valid name), so every file is one
 * directory. Writers of a file hold flock() on its directory (threads and processes alike); readers
 * take no lock: versions are only ever created by rename and removed by unlink, so a reader sees a
 * complete file or none. Directories are 0700, files 0600.
 */
#include "base/common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "vault/crypto.h"
#include "vault/vault.h"

#define VERSION_FILE_LEN 18 /* 16 hex digits + ".v" */
#define RETRIES 8

struct fs_vault {
        struct cm_vault base;
        char *root;
        struct cm_keyring *kr;
        unsigned keep;
};

static struct fs_vault *fsv(struct cm_vault *v) {
        return (struct fs_vault *) v;
}

static void closep_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep_fd)

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

static void encode_name(const char *name, char *out) {
        for (; *name; name++)
                *out++ = *name == '/' ? '%' : *name;
        *out = 0;
}

/* Decodes a directory entry into a file name; false when it is not one. */
static bool decode_name(const char *ent, char *out, size_t size) {
        size_t n = strlen(ent);

        if (n >= size)
                return false;
        for (size_t i = 0; i <= n; i++)
                out[i] = ent[i] == '%' ? '/' : ent[i];
        return cm_vault_name_valid(out);
}

static int owner_path(struct fs_vault *v, const char *owner, char **ret) {
        return asprintf(ret, "%s/live/%s", v->root, owner) < 0 ? -ENOMEM : 0;
}

static int file_dir(struct fs_vault *v, const char *owner, const char *name, char **ret) {
        char enc[CM_VAULT_NAME_MAX + 1];

        encode_name(name, enc);
        return asprintf(ret, "%s/live/%s/%s", v->root, owner, enc) < 0 ? -ENOMEM : 0;
}

static bool parse_version_file(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (strlen(s) != VERSION_FILE_LEN || !streq(s + 16, ".v"))
                return false;
        for (size_t i = 0; i < 16; i++) {
                char c = s[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                        return false;
                v = v << 4 | (uint64_t) d;
        }
        if (v == 0)
                return false;
        *ret = v;
        return true;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/*
 * The versions in directory fd (ascending). With clean_tmp, leftover temp files of interrupted
 * writes are removed (the caller holds the file's lock).
 */
static int scan_versions(int fd, bool clean_tmp, uint64_t **ret, size_t *ret_n) {
        _cleanup_closedir_ DIR *d = NULL;
        _cleanup_free_ uint64_t *vs = NULL;
        size_t n = 0, alloc = 0;
        struct dirent *de;
        int dfd;

        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return negative_errno();
        d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return negative_errno();
        }
        rewinddir(d);
        while ((errno = 0, de = readdir(d))) {
                uint64_t ver;

                if (parse_version_file(de->d_name, &ver)) {
                        if (n == alloc) {
                                size_t na = alloc ? alloc * 2 : 32;
                                uint64_t *nv = reallocarray(vs, na, sizeof(*vs));
                                if (!nv)
                                        return -ENOMEM;
                                vs = nv;
                                alloc = na;
                        }
                        vs[n++] = ver;
                } else if (clean_tmp && strstr(de->d_name, ".tmp-"))
                        (void) unlinkat(fd, de->d_name, 0);
        }
        if (errno != 0)
                return negative_errno();
        if (n > 1)
                qsort(vs, n, sizeof(*vs), cmp_u64);
        *ret = TAKE_PTR(vs);
        *ret_n = n;
        return 0;
}

/* Reads a whole sealed file (ciphertext: not secret). */
static int read_blob_at(int dirfd, const char *path, uint8_t **ret, size_t *ret_n) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *b = NULL;
        struct stat st;
        size_t off = 0;

        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if ((uint64_t) st.st_size > (uint64_t) CM_VAULT_DATA_MAX + CM_SEALED_OVERHEAD_MAX)
                return -EBADMSG;
        b = malloc((size_t) st.st_size + 1);
        if (!b)
                return -ENOMEM;
        while (off < (size_t) st.st_size) {
                ssize_t k = read(fd, b + off, (size_t) st.st_size - off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                off += (size_t) k;
        }
        *ret = TAKE_PTR(b);
        *ret_n = off;
        return 0;
}

static void version_name(uint64_t ver, char out[static VERSION_FILE_LEN + 1]) {
        (void) cm_snprintf(out, VERSION_FILE_LEN + 1, "%016" PRIx64 ".v", ver);
}

/* Opens and locks a file's directory, creating it; retries when a remove raced us. */
static int lock_file_dir(struct fs_vault *v, const char *owner, const char *name, bool create,
                         char **ret_path, int *ret_fd) {
        _cleanup_free_ char *dir = NULL;
        int r;

        r = file_dir(v, owner, name, &dir);
        if (r < 0)
                return r;
        for (unsigned attempt = 0; attempt < RETRIES; attempt++) {
                struct stat st;
                int fd;

                /* the common case first: the directory exists (no mkdir walk) */
                if (create && access(dir, F_OK) < 0) {
                        r = cm_mkdir_p(dir, 0700);
                        if (r == -ENOENT)
                                continue;
                        if (r < 0)
                                return r;
                }
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        r = negative_errno();
                        if (r == -ENOENT && create)
                                continue;
                        return r;
                }
                while (flock(fd, LOCK_EX) < 0) {
                        if (errno != EINTR) {
                                r = negative_errno();
                                close(fd);
                                return r;
                        }
                }
                if (fstat(fd, &st) < 0) {
                        r = negative_errno();
                        close(fd);
                        return r;
                }
                if (st.st_nlink == 0) {
                        /* removed while we waited for the lock */
                        close(fd);
                        if (!create)
                                return -ENOENT;
                        continue;
                }
                *ret_path = TAKE_PTR(dir);
                *ret_fd = fd;
                return 0;
        }
        return -EAGAIN;
}

static int fs_write(struct cm_vault *vv, const char *owner, const char *name, const void *data, size_t n,
                    int64_t expected_version, uint64_t *ret_version) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL, *path = NULL;
        _cleanup_free_ uint64_t *vs = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_close_ int fd = -1;
        char vn[VERSION_FILE_LEN + 1];
        size_t nv = 0, blob_n = 0;
        uint64_t latest, ver;
        int r;

        r = lock_file_dir(v, owner, name, true, &dir, &fd);
        if (r < 0)
                return r;
        r = scan_versions(fd, true, &vs, &nv);
        if (r < 0)
                return r;
        latest = nv ? vs[nv - 1] : 0;
        if (expected_version >= 0 && (uint64_t) expected_version != latest)
                return -ESTALE;
        ver = latest + 1;
        r = cm_vault_seal(v->kr, owner, name, ver, cm_now_usec(), data, n, &blob, &blob_n);
        if (r < 0)
                return r;
        version_name(ver, vn);
        if (asprintf(&path, "%s/%s", dir, vn) < 0)
                return -ENOMEM;
        r = cm_write_file_atomic(path, blob, blob_n, 0600);
        if (r < 0)
                return r;
        /* The new version is durable; now drop the oldest beyond keep. */
        for (size_t i = 0; nv + 1 > v->keep && i < nv + 1 - v->keep; i++) {
                version_name(vs[i], vn);
                (void) unlinkat(fd, vn, 0);
        }
        if (ret_version)
                *ret_version = ver;
        return 0;
}

static int fs_read(struct cm_vault *vv, const char *owner, const char *name, uint64_t version, char **ret,
                   size_t *ret_n, uint64_t *ret_version) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL;
        int r = -ENOENT;

        r = file_dir(v, owner, name, &dir);
        if (r < 0)
                return r;
        for (unsigned attempt = 0; attempt < RETRIES; attempt++) {
                _cleanup_free_ uint64_t *vs = NULL;
                _cleanup_free_ uint8_t *blob = NULL;
                _cleanup_close_ int fd = -1;
                char vn[VERSION_FILE_LEN + 1];
                size_t nv = 0, blob_n = 0;
                uint64_t ver = version;

                fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                if (ver == 0) {
                        r = scan_versions(fd, false, &vs, &nv);
                        if (r < 0)
                                return r;
                        if (nv == 0)
                                return -ENOENT;
                        ver = vs[nv - 1];
                }
                version_name(ver, vn);
                r = read_blob_at(fd, vn, &blob, &blob_n);
                if (r == -ENOENT && version == 0)
                        continue; /* pruned by a concurrent writer: look again */
                if (r < 0)
                        return r;
                r = cm_vault_unseal(v->kr, owner, name, ver, blob, blob_n, ret, ret_n, NULL);
                if (r < 0)
                        return r;
                if (ret_version)
                        *ret_version = ver;
                return 0;
        }
        return -EAGAIN;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool dir_has_versions(int parent, const char *ent) {
        _cleanup_free_ uint64_t *vs = NULL;
        _cleanup_close_ int fd = openat(parent, ent, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        size_t n = 0;

        return fd >= 0 && scan_versions(fd, false, &vs, &n) >= 0 && n > 0;
}

static int fs_list_files(struct cm_vault *vv, const char *owner, char ***ret, size_t *ret_n) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL;
        _cleanup_closedir_ DIR *d = NULL;
        char **names = NULL;
        size_t n = 0, alloc = 0;
        struct dirent *de;
        int r;

        r = owner_path(v, owner, &dir);
        if (r < 0)
                return r;
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return negative_errno();
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        while ((errno = 0, de = readdir(d))) {
                char name[CM_VAULT_NAME_MAX + 1];

                if (de->d_name[0] == '.' || !decode_name(de->d_name, name, sizeof(name)) ||
                    !dir_has_versions(dirfd(d), de->d_name))
                        continue;
                if (n == alloc) {
                        size_t na = alloc ? alloc * 2 : 16;
                        char **nn = reallocarray(names, na, sizeof(*names));
                        if (!nn) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        names = nn;
                        alloc = na;
                }
                names[n] = strdup(name);
                if (!names[n]) {
                        r = -ENOMEM;
                        goto fail;
                }
                n++;
        }
        if (errno != 0) {
                r = negative_errno();
                goto fail;
        }
        if (n > 1)
                qsort(names, n, sizeof(*names), cmp_str);
        *ret = names;
        *ret_n = n;
        return 0;
fail:
        cm_vault_names_free(names, n);
        return r;
}

static int fs_list_versions(struct cm_vault *vv, const char *owner, const char *name,
                            struct cm_vault_version **ret, size_t *ret_n) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ uint64_t *vs = NULL;
        _cleanup_free_ struct cm_vault_version *out = NULL;
        _cleanup_close_ int fd = -1;
        size_t nv = 0, k = 0;
        int r;

        r = file_dir(v, owner, name, &dir);
        if (r < 0)
                return r;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        r = scan_versions(fd, false, &vs, &nv);
        if (r < 0)
                return r;
        if (nv == 0)
                return -ENOENT;
        out = new0(struct cm_vault_version, nv);
        if (!out)
                return -ENOMEM;
        for (size_t i = nv; i-- > 0;) {
                _cleanup_free_ uint8_t *blob = NULL;
                char vn[VERSION_FILE_LEN + 1];
                struct cm_sealed_info info;
                size_t blob_n = 0;

                version_name(vs[i], vn);
                r = read_blob_at(fd, vn, &blob, &blob_n);
                if (r == -ENOENT)
                        continue; /* pruned meanwhile */
                if (r < 0)
                        return r;
                r = cm_vault_sealed_info(blob, blob_n, &info);
                if (r < 0 || info.version != vs[i])
                        return -EBADMSG;
                out[k].version = vs[i];
                out[k].created_usec = info.created_usec;
                out[k].size = info.size;
                memcpy(out[k].key_id, info.key_id, sizeof(out[k].key_id));
                k++;
        }
        if (k == 0)
                return -ENOENT;
        *ret = TAKE_PTR(out);
        *ret_n = k;
        return 0;
}

static int fs_remove(struct cm_vault *vv, const char *owner, const char *name) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL;
        _cleanup_closedir_ DIR *d = NULL;
        _cleanup_close_ int fd = -1;
        struct dirent *de;
        bool any = false;
        int r, dfd;

        r = lock_file_dir(v, owner, name, false, &dir, &fd);
        if (r < 0)
                return r;
        if (!dir)
                return -EIO;
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return negative_errno();
        d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return negative_errno();
        }
        while ((errno = 0, de = readdir(d))) {
                uint64_t ver;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (parse_version_file(de->d_name, &ver))
                        any = true;
                if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
                        return negative_errno();
        }
        if (rmdir(dir) < 0)
                return negative_errno();
        return any ? 0 : -ENOENT;
}

static int fsync_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

static int fs_archive(struct cm_vault *vv, const char *owner, uint64_t now_usec) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *src = NULL, *dst = NULL, *adir = NULL;
        char **names = NULL;
        size_t n = 0;
        int r;

        r = fs_list_files(vv, owner, &names, &n);
        if (r < 0)
                return r;
        cm_vault_names_free(names, n);
        if (n == 0)
                return -ENOENT;
        r = owner_path(v, owner, &src);
        if (r < 0)
                return r;
        if (asprintf(&adir, "%s/archive", v->root) < 0 ||
            asprintf(&dst, "%s/%s@%016" PRIx64, adir, owner, now_usec) < 0)
                return -ENOMEM;
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0)
                return negative_errno();
        r = fsync_path(adir);
        if (r < 0)
                return r;
        {
                _cleanup_free_ char *live = NULL;
                if (asprintf(&live, "%s/live", v->root) < 0)
                        return -ENOMEM;
                return fsync_path(live);
        }
}

static bool parse_archive_entry(const char *ent, struct cm_vault_archive *ret) {
        const char *at = strrchr(ent, '@');
        uint64_t usec = 0;
        size_t ol;

        if (!at || strlen(at + 1) != 16)
                return false;
        ol = (size_t) (at - ent);
        if (ol == 0 || ol > CM_VAULT_OWNER_MAX)
                return false;
        for (const char *p = at + 1; *p; p++) {
                int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
                if (d < 0)
                        return false;
                usec = usec << 4 | (uint64_t) d;
        }
        memcpy(ret->owner, ent, ol);
        ret->owner[ol] = 0;
        ret->archived_usec = usec;
        return cm_vault_owner_valid(ret->owner);
}

static int cmp_archive(const void *a, const void *b) {
        const struct cm_vault_archive *x = a, *y = b;
        if (x->archived_usec != y->archived_usec)
                return x->archived_usec < y->archived_usec ? -1 : 1;
        return strcmp(x->owner, y->owner);
}

static int fs_list_archives(struct cm_vault *vv, struct cm_vault_archive **ret, size_t *ret_n) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *adir = NULL;
        _cleanup_closedir_ DIR *d = NULL;
        _cleanup_free_ struct cm_vault_archive *out = NULL;
        size_t n = 0, alloc = 0;
        struct dirent *de;

        if (asprintf(&adir, "%s/archive", v->root) < 0)
                return -ENOMEM;
        d = opendir(adir);
        if (!d)
                return negative_errno();
        while ((errno = 0, de = readdir(d))) {
                struct cm_vault_archive a;

                if (!parse_archive_entry(de->d_name, &a))
                        continue;
                if (n == alloc) {
                        size_t na = alloc ? alloc * 2 : 16;
                        struct cm_vault_archive *no = reallocarray(out, na, sizeof(*out));
                        if (!no)
                                return -ENOMEM;
                        out = no;
                        alloc = na;
                }
                out[n++] = a;
        }
        if (errno != 0)
                return negative_errno();
        if (n > 1)
                qsort(out, n, sizeof(*out), cmp_archive);
        *ret = TAKE_PTR(out);
        *ret_n = n;
        return 0;
}

/* Removes name under parent and everything below it. */
static int rm_rf_at(int parent, const char *name, unsigned depth) {
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        int fd;

        if (depth > 8)
                return -ELOOP;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOTDIR || errno == ELOOP)
                        return unlinkat(parent, name, 0) < 0 ? negative_errno() : 0;
                return negative_errno();
        }
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return negative_errno();
        }
        while ((errno = 0, de = readdir(d))) {
                int r;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
                        r = rm_rf_at(dirfd(d), de->d_name, depth + 1);
                else
                        r = unlinkat(dirfd(d), de->d_name, 0) < 0 ? negative_errno() : 0;
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0)
                return negative_errno();
        return 0;
}

static int fs_purge(struct cm_vault *vv, uint64_t before_usec) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ struct cm_vault_archive *as = NULL;
        _cleanup_free_ char *adir = NULL;
        _cleanup_close_ int afd = -1;
        size_t n = 0;
        int r, count = 0;

        r = fs_list_archives(vv, &as, &n);
        if (r < 0)
                return r;
        if (asprintf(&adir, "%s/archive", v->root) < 0)
                return -ENOMEM;
        afd = open(adir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (afd < 0)
                return negative_errno();
        for (size_t i = 0; i < n && as[i].archived_usec < before_usec; i++) {
                char ent[CM_VAULT_OWNER_MAX + 32];

                (void) cm_snprintf(ent, sizeof(ent), "%s@%016" PRIx64, as[i].owner, as[i].archived_usec);
                r = rm_rf_at(afd, ent, 0);
                if (r < 0 && r != -ENOENT)
                        return r;
                count++;
        }
        if (count > 0 && fsync(afd) < 0)
                return negative_errno();
        return count;
}

/* Re-wraps the versions of one file directory; stops when *budget reaches 0 (SIZE_MAX: no limit). */
static int rewrap_file_dir(struct fs_vault *v, const char *dirpath, const char *owner, const char *name,
                           size_t *budget, size_t *count) {
        _cleanup_free_ uint64_t *vs = NULL;
        _cleanup_close_ int fd = -1;
        size_t nv = 0;
        int r;

        fd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return negative_errno();
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return negative_errno();
        r = scan_versions(fd, true, &vs, &nv);
        if (r < 0)
                return r;
        for (size_t i = 0; i<nv && * budget> 0; i++) {
                _cleanup_free_ uint8_t *blob = NULL, *nb = NULL;
                _cleanup_free_ char *path = NULL;
                char vn[VERSION_FILE_LEN + 1];
                size_t blob_n = 0, nb_n = 0;

                version_name(vs[i], vn);
                r = read_blob_at(fd, vn, &blob, &blob_n);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                r = cm_vault_rewrap_sealed(v->kr, owner, name, vs[i], blob, blob_n, &nb, &nb_n);
                if (r < 0)
                        return r;
                if (r == 1)
                        continue;
                if (asprintf(&path, "%s/%s", dirpath, vn) < 0)
                        return -ENOMEM;
                r = cm_write_file_atomic(path, nb, nb_n, 0600);
                if (r < 0)
                        return r;
                (*count)++;
                if (*budget != SIZE_MAX)
                        (*budget)--;
        }
        return 0;
}

/* Re-wraps every file of every owner directory under base (live/ or archive/). */
static int rewrap_tree(struct fs_vault *v, const char *base, bool archived, size_t *budget, size_t *count) {
        _cleanup_closedir_ DIR *d = opendir(base);
        struct dirent *de;

        if (!d)
                return negative_errno();
        while (*budget > 0 && (errno = 0, de = readdir(d))) {
                _cleanup_closedir_ DIR *od = NULL;
                _cleanup_free_ char *opath = NULL;
                struct cm_vault_archive a;
                struct dirent *fe;

                if (de->d_name[0] == '.')
                        continue;
                if (archived) {
                        if (!parse_archive_entry(de->d_name, &a))
                                continue;
                } else {
                        if (!cm_vault_owner_valid(de->d_name) ||
                            cm_strlcpy(a.owner, de->d_name, sizeof(a.owner)) < 0)
                                continue;
                }
                if (asprintf(&opath, "%s/%s", base, de->d_name) < 0)
                        return -ENOMEM;
                od = opendir(opath);
                if (!od)
                        continue;
                while (*budget > 0 && (errno = 0, fe = readdir(od))) {
                        _cleanup_free_ char *fpath = NULL;
                        char name[CM_VAULT_NAME_MAX + 1];
                        int r;

                        if (fe->d_name[0] == '.' || !decode_name(fe->d_name, name, sizeof(name)))
                                continue;
                        if (asprintf(&fpath, "%s/%s", opath, fe->d_name) < 0)
                                return -ENOMEM;
                        r = rewrap_file_dir(v, fpath, a.owner, name, budget, count);
                        if (r < 0 && r != -ENOENT)
                                return r;
                }
        }
        return 0;
}

static int fs_rewrap(struct cm_vault *vv, size_t limit) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *live = NULL, *adir = NULL;
        size_t budget = limit ? limit : SIZE_MAX, count = 0;
        int r;

        if (asprintf(&live, "%s/live", v->root) < 0 || asprintf(&adir, "%s/archive", v->root) < 0)
                return -ENOMEM;
        r = rewrap_tree(v, live, false, &budget, &count);
        if (r < 0)
                return r;
        r = rewrap_tree(v, adir, true, &budget, &count);
        if (r < 0)
                return r;
        return (int) MIN(count, (size_t) INT_MAX);
}

static void fs_close(struct cm_vault *vv) {
        struct fs_vault *v = fsv(vv);

        cm_keyring_free(v->kr);
        free(v->root);
        free(v);
}

static int fs_open(const char *url, const struct cm_keyring *kr, unsigned keep, struct cm_vault **ret) {
        _cleanup_free_ char *live = NULL, *adir = NULL;
        struct fs_vault *v;
        const char *path = url;
        int r;

        if (strneq(url, "file://", 7))
                path = url + 7;
        if (isempty(path) || keep < 1 || keep > CM_VAULT_KEEP_MAX || !kr || kr->n == 0)
                return -EINVAL;
        v = new0(struct fs_vault, 1);
        if (!v)
                return -ENOMEM;
        v->base.ops = &cm_vault_fs_ops;
        v->keep = keep;
        v->root = strdup(path);
        r = v->root ? cm_keyring_dup(kr, &v->kr) : -ENOMEM;
        if (r < 0)
                goto fail;
        if (asprintf(&live, "%s/live", v->root) < 0 || asprintf(&adir, "%s/archive", v->root) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = cm_mkdir_p(live, 0700)) < 0 || (r = cm_mkdir_p(adir, 0700)) < 0)
                goto fail;
        *ret = &v->base;
        return 0;
fail:
        fs_close(&v->base);
        return r;
}

const struct cm_vault_ops cm_vault_fs_ops = {
        .name = "fs",
        .scheme = "file",
        .open = fs_open,
        .close = fs_close,
        .write = fs_write,
        .read = fs_read,
        .list_files = fs_list_files,
        .list_versions = fs_list_versions,
        .remove = fs_remove,
        .archive = fs_archive,
        .list_archives = fs_list_archives,
        .purge = fs_purge,
        .rewrap = fs_rewrap,
};

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fs vault backend: a directory (the volume an EBS disk is mounted on).
 *
 *   <root>/live/<owner>/<file>/<version as 16 hex digits>.v      sealed versions (0600)
 *   <root>/live/<owner>/<file>/spare.ready, spare.pending          spare files (see below)
 *   <root>/archive/<owner>@<archived usec as 16 hex digits>/...   archived owners, same layout
 *
 * <file> is the file name with '/' written as '%' (never part of a valid name), so every file is one
 * directory. Writers of a file hold flock() on its directory (threads and processes alike); readers
 * take no lock: a version's name only ever appears by rename of a complete, fsync'ed file, and a
 * version file is never written to while it has that name. Directories are 0700, files 0600.
 *
 * Spares. Freeing a file's blocks and allocating new ones are the dearest parts of a write after the
 * two commits it needs (the file, then the directory): on some volumes freeing blocks waits for a
 * discard. So the version pruned beyond keep is not unlinked but renamed to spare.pending (its
 * wrapped data key overwritten with zeros right away: what is left is ciphertext without a key), and
 * a later write seals into that inode in place (no allocation), then renames it to the new version's
 * name. An inode may be overwritten only when no version name can point to it after a power loss,
 * i.e. when a successful fsync of the directory followed the rename that took its version name
 * away. So a write promotes spare.pending to spare.ready only after its own directory fsync
 * succeeded, and only spare.ready is ever written to (or a new spare.ready when there is none).
 * A reader that still holds a pruned version open when it is recycled fails authentication, sees
 * that the name no longer leads to that inode, and reports -ENOENT (or looks up the newest again).
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
#define SPARE_READY "spare.ready"
#define SPARE_PENDING "spare.pending"
/* Bytes of a pruned version overwritten with zeros: its header with the wrapped data key, one page. */
#define SHRED_LEN 4096

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

/* Hands over a descriptor held by a cleanup attribute. */
static int take_fd(int *fd) {
        int r = *fd;

        *fd = -1;
        return r;
}

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
        _cleanup_free_ uint64_t *vs = NULL;
        size_t n = 0, alloc = 0;
        /* getdents64 on fd itself: no duplicate descriptor, no DIR with its buffer per call */
        union {
                struct dirent64 align;
                uint8_t b[8192];
        } buf;

        if (lseek(fd, 0, SEEK_SET) < 0)
                return negative_errno();
        for (;;) {
                ssize_t k = getdents64(fd, buf.b, sizeof(buf.b));

                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                for (size_t off = 0; off < (size_t) k;) {
                        const struct dirent64 *de = (const struct dirent64 *) (buf.b + off);
                        uint64_t ver;

                        off += de->d_reclen;
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
        }
        if (n > 1)
                qsort(vs, n, sizeof(*vs), cmp_u64);
        *ret = TAKE_PTR(vs);
        *ret_n = n;
        return 0;
}

/* Opens a version file for reading; ret_st gets what fstat says of it. */
static int open_version(int dirfd, const char *vn, struct stat *ret_st) {
        _cleanup_close_ int fd = -1;

        fd = openat(dirfd, vn, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        if (!S_ISREG(ret_st->st_mode) ||
            (uint64_t) ret_st->st_size > (uint64_t) CM_VAULT_DATA_MAX + CM_SEALED_OVERHEAD_MAX)
                return -EBADMSG;
        return take_fd(&fd);
}

/* A cm_vault_source_fn: reads from the file descriptor userdata points to. */
static int read_exact(void *userdata, void *buf, size_t n) {
        int fd = *(const int *) userdata;
        uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EBADMSG; /* shorter than it was */
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads a whole sealed file (ciphertext: not secret). */
static int read_blob_at(int dirfd, const char *vn, uint8_t **ret, size_t *ret_n) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *b = NULL;
        struct stat st = {}; /* set by the open; zeroed for the analyzer */
        int r;

        fd = open_version(dirfd, vn, &st);
        if (fd < 0)
                return fd;
        b = malloc((size_t) st.st_size + 1);
        if (!b)
                return -ENOMEM;
        r = read_exact(&fd, b, (size_t) st.st_size);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        *ret_n = (size_t) st.st_size;
        return 0;
}

/*
 * Whether name in dirfd still is the inode st describes. A version that fails authentication may have
 * been pruned and recycled as a spare while it was read: then its name is gone (a version file is
 * never written to while it has its name, and version names are not reused).
 */
static bool still_named(int dirfd, const char *name, const struct stat *st) {
        struct stat now;

        return fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st->st_dev &&
               now.st_ino == st->st_ino;
}

static bool is_auth_error(int r) {
        return r == -EBADMSG || r == -ENOKEY || r == -EKEYREJECTED;
}

static void version_name(uint64_t ver, char out[static VERSION_FILE_LEN + 1]) {
        (void) cm_snprintf(out, VERSION_FILE_LEN + 1, "%016" PRIx64 ".v", ver);
}

static int fsync_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

/*
 * Creates a file's directory and its owner's, each made durable in its parent: a version's name is
 * durable only when every directory above it is. The parents are synced even when the directories
 * exist (a writer that made them may have died before it synced).
 */
static int make_file_dir(struct fs_vault *v, const char *owner, const char *dir) {
        _cleanup_free_ char *odir = NULL, *live = NULL;
        int r;

        r = owner_path(v, owner, &odir);
        if (r < 0)
                return r;
        if (asprintf(&live, "%s/live", v->root) < 0)
                return -ENOMEM;
        r = cm_mkdir_p(odir, 0700);
        if (r < 0)
                return r;
        r = fsync_path(live);
        if (r < 0)
                return r;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        return fsync_path(odir);
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

                /* the common case first: the directory exists */
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        r = negative_errno();
                        if (r != -ENOENT || !create)
                                return r;
                        r = make_file_dir(v, owner, dir);
                        if (r < 0 && r != -ENOENT)
                                return r;
                        continue;
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

/* Where a sealed version goes: appended to fd, with one early writeback kick (see file_sink_put). */
struct file_sink {
        int fd;
        size_t written;
        size_t kick_at; /* 0: no kick */
};

/* Contents of at least this many bytes get the early writeback kick. */
#define KICK_MIN (2U * CM_SEAL_CHUNK)
#define PAGE_MASK_4K (~(size_t) 4095)

/*
 * A cm_vault_sink_fn: appends to the file. Once half of a large file is written, writeback of that
 * half is started (sync_file_range without waiting), so that the device takes it while the rest is
 * still being encrypted; the fsync after the last byte is what makes the file durable, this is only
 * a head start.
 */
static int file_sink_put(void *userdata, const void *buf, size_t n) {
        struct file_sink *s = userdata;
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t w = write(s->fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += w;
                n -= (size_t) w;
                s->written += (size_t) w;
        }
        if (s->kick_at > 0 && s->written >= s->kick_at) {
                s->kick_at = 0;
                if (sync_file_range(s->fd, 0, (off_t) (s->written & PAGE_MASK_4K), SYNC_FILE_RANGE_WRITE) <
                    0)
                        return negative_errno();
        }
        return 0;
}

/*
 * Opens spare.ready to be overwritten, creating it when there is none. One that is not a plain file
 * of one name is replaced by a new one: an inode that some other name may still lead to is never
 * written to.
 */
static int open_spare(int dfd, struct stat *ret_st) {
        for (unsigned attempt = 0; attempt < 2; attempt++) {
                int fd, flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;

                fd = openat(dfd, SPARE_READY, attempt == 0 ? flags : flags | O_EXCL, 0600);
                if (fd >= 0) {
                        if (fstat(fd, ret_st) < 0) {
                                int r = negative_errno();
                                close(fd);
                                return r;
                        }
                        if (S_ISREG(ret_st->st_mode) && ret_st->st_nlink == 1)
                                return fd;
                        close(fd);
                } else if (attempt > 0 || (errno != ELOOP && errno != ENXIO)) /* ELOOP: a symlink */
                        return negative_errno();
                if (unlinkat(dfd, SPARE_READY, 0) < 0)
                        return negative_errno();
        }
        return -EEXIST;
}

/*
 * Writes version ver of (owner, name) as vn in the locked directory dfd, durably: sealed straight
 * into spare.ready (no copy of the whole file in memory, writeback of a large file's first half
 * started while its second half is encrypted), fsync, rename to vn, fsync of the directory. A crash
 * leaves vn absent or complete.
 */
static int write_version(struct fs_vault *v, int dfd, const char *owner, const char *name, uint64_t ver,
                         const void *data, size_t n, const char *vn) {
        _cleanup_close_ int fd = -1;
        struct file_sink sink;
        struct stat st = {}; /* set by the open; zeroed for the analyzer */
        size_t total = 0;
        int r;

        fd = open_spare(dfd, &st);
        if (fd < 0)
                return fd;
        sink = (struct file_sink){ .fd = fd, .kick_at = n >= KICK_MIN ? n / 2 : 0 };
        r = cm_vault_seal_to(v->kr, owner, name, ver, cm_now_usec(), data, n, file_sink_put, &sink, &total);
        if (r < 0)
                goto fail;
        /* a recycled spare may be longer; 0600 whatever the umask, before the fsync makes it durable */
        if (((uint64_t) st.st_size > total && ftruncate(fd, (off_t) total) < 0) ||
            ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) || fsync(fd) < 0 ||
            renameat(dfd, SPARE_READY, dfd, vn) < 0) {
                r = negative_errno();
                goto fail;
        }
        /* the version exists from here on: no temp file to remove on failure */
        if (fsync(dfd) < 0)
                return negative_errno();
        return 0;
fail:
        (void) unlinkat(dfd, SPARE_READY, 0);
        return r;
}

/*
 * Renames a pruned version to spare.pending and overwrites its header, wrapped data key included,
 * with zeros: what stays on the volume until a write reuses it is ciphertext without a key.
 */
static int make_pending_spare(int dfd, const char *vn) {
        static const uint8_t zeros[SHRED_LEN];
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = openat(dfd, vn, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
                return -EBADF;
        if (renameat(dfd, vn, dfd, SPARE_PENDING) < 0)
                return negative_errno();
        /* only now: a reader that has the version open then fails, finds its name gone: -ENOENT */
        if (pwrite(fd, zeros, sizeof(zeros), 0) != (ssize_t) sizeof(zeros))
                (void) unlinkat(dfd, SPARE_PENDING, 0);
        return 0;
}

/*
 * Drops the drop oldest versions of vs (ascending): the first becomes spare.pending, the others are
 * unlinked. Only after a successful fsync of the directory that followed the new version's rename.
 */
static void prune(int dfd, const uint64_t *vs, size_t drop) {
        char vn[VERSION_FILE_LEN + 1];

        for (size_t i = 0; i < drop; i++) {
                version_name(vs[i], vn);
                if (i == 0 && make_pending_spare(dfd, vn) >= 0)
                        continue;
                (void) unlinkat(dfd, vn, 0);
        }
}

static int fs_write(struct cm_vault *vv, const char *owner, const char *name, const void *data, size_t n,
                    int64_t expected_version, uint64_t *ret_version) {
        struct fs_vault *v = fsv(vv);
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ uint64_t *vs = NULL;
        _cleanup_close_ int fd = -1;
        char vn[VERSION_FILE_LEN + 1];
        size_t nv = 0;
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
        version_name(ver, vn);
        r = write_version(v, fd, owner, name, ver, data, n, vn);
        if (r < 0)
                return r;
        /*
         * The new version is durable, and with it every rename in the directory before it, among them
         * the one that made spare.pending: it may be overwritten now. Then drop the oldest beyond keep.
         */
        (void) renameat(fd, SPARE_PENDING, fd, SPARE_READY);
        prune(fd, vs, nv + 1 > v->keep ? nv + 1 - v->keep : 0);
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
                _cleanup_close_ int fd = -1, vfd = -1;
                char vn[VERSION_FILE_LEN + 1];
                uint64_t ver = version;
                struct stat st = {}; /* set by the open; zeroed for the analyzer */
                size_t nv = 0;

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
                vfd = open_version(fd, vn, &st);
                if (vfd == -ENOENT && version == 0)
                        continue; /* pruned by a concurrent writer: look again */
                if (vfd < 0)
                        return vfd;
                r = cm_vault_unseal_from(v->kr, owner, name, ver, (size_t) st.st_size, read_exact, &vfd, ret,
                                         ret_n);
                if (is_auth_error(r) && !still_named(fd, vn, &st)) {
                        /* pruned and recycled while we read it */
                        if (version == 0)
                                continue;
                        return -ENOENT;
                }
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
                _cleanup_close_ int vfd = -1;
                char vn[VERSION_FILE_LEN + 1];
                struct cm_sealed_info info;
                struct stat st = {}; /* set by the open; zeroed for the analyzer */

                version_name(vs[i], vn);
                vfd = open_version(fd, vn, &st);
                if (vfd == -ENOENT)
                        continue; /* pruned meanwhile */
                if (vfd < 0)
                        return vfd;
                /* the header says all that is listed */
                r = cm_vault_sealed_info_from((size_t) st.st_size, read_exact, &vfd, &info);
                if (r == -EBADMSG || (r >= 0 && info.version != vs[i])) {
                        if (!still_named(fd, vn, &st))
                                continue; /* pruned and recycled while we read it */
                        return -EBADMSG;
                }
                if (r < 0)
                        return r;
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
        /* durable entries for live/ and archive/ (see make_file_dir) */
        if ((r = cm_mkdir_p(live, 0700)) < 0 || (r = cm_mkdir_p(adir, 0700)) < 0 ||
            (r = fsync_path(v->root)) < 0)
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

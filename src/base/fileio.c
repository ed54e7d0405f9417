/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"

int cm_read_file(const char *path, size_t max, bool secure, char **ret, size_t *ret_len) {
        struct strbuf sb;
        int fd, r = 0;

        if (secure)
                strbuf_init_secret(&sb, max);
        else
                strbuf_init(&sb, max);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        for (;;) {
                ssize_t n;

                r = strbuf_grow(&sb, 4096 < max - sb.len ? 4096 : max - sb.len);
                if (r < 0)
                        goto out;
                if (sb.len >= max) {
                        char c;
                        n = read(fd, &c, 1);
                        if (n > 0)
                                r = -EFBIG;
                        else if (n < 0)
                                r = negative_errno();
                        if (r < 0)
                                goto out;
                        break;
                }
                n = read(fd, sb.buf + sb.len, sb.alloc - sb.len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto out;
                }
                if (n == 0)
                        break;
                sb.len += (size_t) n;
                sb.buf[sb.len] = 0;
        }
        *ret = strbuf_detach(&sb, ret_len);
        if (!*ret)
                r = -ENOMEM;
out:
        close(fd);
        strbuf_release(&sb);
        return r;
}

static int fsync_dir_of(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        int fd, r = 0;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fsync(fd) < 0)
                r = negative_errno();
        close(fd);
        return r;
}

int cm_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        char suffix[32];
        const char *p = data;
        size_t off = 0;
        int fd, r;

        r = cm_random_id(".tmp-", suffix, sizeof(suffix));
        if (r < 0)
                return r;
        if (asprintf(&tmp, "%s%s", path, suffix) < 0)
                return -ENOMEM;

        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 0600);
        if (fd < 0)
                return negative_errno();
        while (off < n) {
                ssize_t w = write(fd, p + off, n - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto fail;
                }
                off += (size_t) w;
        }
        if (fsync(fd) < 0 || fchmod(fd, mode) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (close(fd) < 0) {
                fd = -1;
                r = negative_errno();
                goto fail;
        }
        fd = -1;
        if (rename(tmp, path) < 0) {
                r = negative_errno();
                goto fail;
        }
        return fsync_dir_of(path);
fail:
        if (fd >= 0)
                close(fd);
        (void) unlink(tmp);
        return r;
}

int cm_mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

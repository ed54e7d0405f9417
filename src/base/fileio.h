/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * Reads a whole file of at most max bytes into a new NUL-terminated buffer. With secure set, the
 * buffer is wiped on every path where it is not handed over (key files); -EFBIG past max.
 */
_warn_unused_result_ int cm_read_file(const char *path, size_t max, bool secure, char **ret,
                                      size_t *ret_len);

/*
 * Durable replacement of path: temp file in the same directory (O_EXCL), write, fsync, fchmod(mode),
 * rename over path, fsync the directory. A crash leaves the old or the new content, never a torn file;
 * the temp file is removed on failure.
 */
_warn_unused_result_ int cm_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);

/* Creates path and its missing parents with mode (existing directories are left as they are). */
_warn_unused_result_ int cm_mkdir_p(const char *path, mode_t mode);

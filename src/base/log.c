/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include "base/log.h"
#include "base/secret.h"
#include "base/strbuf.h"
#include "base/util.h"

static enum log_level min_level = LOG_LEVEL_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {
        [LOG_LEVEL_DEBUG] = "debug",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_WARNING] = "warning",
        [LOG_LEVEL_ERROR] = "error",
};

void log_set_level(enum log_level level) {
        min_level = level;
}

enum log_level log_get_level(void) {
        return min_level;
}

void log_set_fd(int fd) {
        log_fd = fd;
}

int log_level_from_string(const char *s, enum log_level *ret) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret = (enum log_level) i;
                        return 0;
                }
        return -EINVAL;
}

int log_full(enum log_level level, int error, const char *fields, const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT(16 * 1024);
        char msg[2048], ts[40];
        va_list ap;
        int saved_errno = errno, ret;

        ret = error > 0 ? -error : error;
        if (level < min_level)
                return ret;

        errno = error < 0 ? -error : error;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        (void) cm_redact(msg);

        cm_format_rfc3339(cm_now_usec(), ts, sizeof(ts));
        if (strbuf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]) < 0 ||
            strbuf_add_json_string(&line, msg) < 0)
                goto out;
        if (error != 0) {
                errno = error < 0 ? -error : error;
                if (strbuf_addf(&line, ",\"error\":\"%m\"") < 0)
                        goto out;
        }
        if (!isempty(fields) && (strbuf_addch(&line, ',') < 0 || strbuf_adds(&line, fields) < 0))
                goto out;
        if (strbuf_adds(&line, "}\n") < 0)
                goto out;
        /* One write per line: lines of concurrent threads do not interleave. */
        (void) !write(log_fd, line.buf, line.len);
out:
        errno = saved_errno;
        return ret;
}

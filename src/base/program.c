/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

#include <libgen.h>
#include <limits.h>

#include "base/program.h"
#include "base/strbuf.h"

void cm_program_default_path(const char *name, bool fallback_to_path, char *buf, size_t size) {
        char exe[PATH_MAX], candidate[PATH_MAX + 64];
        ssize_t n;

        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
                exe[n] = 0;
                if (cm_snprintf(candidate, sizeof(candidate), "%s/%s", dirname(exe), name) > 0 &&
                    access(candidate, X_OK) == 0 && cm_strlcpy(buf, candidate, size) >= 0)
                        return;
        }
        if (cm_snprintf(candidate, sizeof(candidate), "./bin/%s", name) > 0 &&
            (!fallback_to_path || access(candidate, X_OK) == 0) && cm_strlcpy(buf, candidate, size) >= 0)
                return;
        (void) cm_strlcpy(buf, name, size);
}

int cm_program_resolve(const char *p, char *buf, size_t size) {
        char tmp[PATH_MAX];

        if (!strchr(p, '/')) {
                const char *path = getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin";

                for (const char *d = path; *d;) {
                        const char *e = strchrnul(d, ':');
                        char cand[PATH_MAX];

                        if (e > d && cm_snprintf(cand, sizeof(cand), "%.*s/%s", (int) (e - d), d, p) > 0 &&
                            access(cand, X_OK) == 0 && realpath(cand, tmp))
                                return cm_strlcpy(buf, tmp, size) < 0 ? -ENAMETOOLONG : 0;
                        d = *e ? e + 1 : e;
                }
                return -ENOENT;
        }
        if (!realpath(p, tmp))
                return negative_errno();
        if (access(tmp, X_OK) < 0)
                return negative_errno();
        return cm_strlcpy(buf, tmp, size) < 0 ? -ENAMETOOLONG : 0;
}

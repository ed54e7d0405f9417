/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * Structured logs: one JSON object per line on stderr, {"ts","level","msg"} plus optional fields.
 * Lower layers log at debug at most; the layer that decides logs once. Messages never carry secrets:
 * request bodies, tokens and keys are never passed here.
 */
enum log_level {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_ERROR,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_level_from_string(const char *s, enum log_level *ret);
/* Log lines go to this fd (default 2). */
void log_set_fd(int fd);

/*
 * Logs one line. `fields` is NULL or a comma-separated list of already-encoded JSON members
 * ("\"route\":\"x\",\"code\":200") appended to the object. When error is non-zero, %m in fmt
 * expands to its description and an "error" member is added. Returns -abs(error) (or 0).
 */
_printf_(4, 5) int log_full(enum log_level level, int error, const char *fields, const char *fmt, ...);

#define log_debug(...) log_full(LOG_LEVEL_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_LEVEL_ERROR, 0, NULL, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full(LOG_LEVEL_DEBUG, (e), NULL, __VA_ARGS__)
#define log_info_errno(e, ...) log_full(LOG_LEVEL_INFO, (e), NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_LEVEL_WARNING, (e), NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_LEVEL_ERROR, (e), NULL, __VA_ARGS__)

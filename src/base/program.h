/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "base/common.h"

/*
 * The default location of a helper program the service runs (rke, clustermgmt-localk8s): next to the
 * running binary when an executable of that name is there, else ./bin/<name> when it exists, else
 * ./bin/<name> or the bare name (looked up in PATH when run) as fallback says.
 */
void cm_program_default_path(const char *name, bool fallback_to_path, char *buf, size_t size);

/*
 * The absolute path (symbolic links resolved) of an executable: path itself when it has a '/', else
 * the first executable of that name in $PATH (/usr/local/bin:/usr/bin:/bin when unset). 0, -ENOENT
 * (none in PATH), -ENAMETOOLONG, or the errno of realpath()/access().
 */
_warn_unused_result_ int cm_program_resolve(const char *path, char *buf, size_t size);

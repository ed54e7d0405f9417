/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Included first by every source file: the system headers everyone needs, the project's macros, and
 * then banned.h, which must come after every declaration of the functions it bans.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/macro.h"
#include "base/banned.h"

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/* A loopback TCP port that was free a moment ago (bound, read, closed); fails the test when none is. */
int cm_test_free_port(void);

/* Whether something accepts TCP connections on 127.0.0.1:port. */
bool cm_test_port_accepts(int port);

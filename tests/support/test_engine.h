/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The test engine (engine name "test"), compiled only into test binaries. It stands in for a real
 * engine so that the workers, leases, retries and cancellation can be driven without any cluster.
 * Its behaviour comes from spec.test:
 *   durationMs     how long apply/destroy take (checked for cancellation every 10 ms)
 *   failAttempts   the first N attempts fail with a retryable error
 *   failPermanently  a message: every attempt fails for good with it
 *   spawnSleep     run `sleep` as a child for the duration (cancellation must kill it)
 *   logLines       lines of output written to the operation log
 * When CM_TEST_ENGINE_JOURNAL names a file, every call appends "<start|end> <op> <cluster> <attempt>"
 * to it (O_APPEND), so tests count calls across crashes.
 */
void cm_test_engine_register(void);

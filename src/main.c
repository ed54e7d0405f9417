/* SPDX-License-Identifier: Apache-2.0 */
#include "base/common.h"

int main(int argc, char *argv[]) {
        return 0;
}

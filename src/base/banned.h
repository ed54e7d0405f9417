/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Unsafe libc calls turned into compile errors. Included last by common.h, after the system headers
 * that declare these functions, so the declarations are untouched and every later use fails to build.
 * Use the bounded replacements in strbuf.h and parse.h instead.
 */

#define CM_BANNED(func) sorry_##func##_is_banned_use_the_bounded_helpers

#undef strcpy
#define strcpy(x, y) CM_BANNED(strcpy)
#undef strcat
#define strcat(x, y) CM_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) CM_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) CM_BANNED(strncat)
#undef sprintf
#define sprintf(...) CM_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) CM_BANNED(vsprintf)
#undef gets
#define gets(x) CM_BANNED(gets)
#undef strtok
#define strtok(x, y) CM_BANNED(strtok)
#undef gmtime
#define gmtime(x) CM_BANNED(gmtime)
#undef localtime
#define localtime(x) CM_BANNED(localtime)
#undef ctime
#define ctime(x) CM_BANNED(ctime)
#undef asctime
#define asctime(x) CM_BANNED(asctime)
#undef atoi
#define atoi(x) CM_BANNED(atoi)
#undef atol
#define atol(x) CM_BANNED(atol)
#undef atoll
#define atoll(x) CM_BANNED(atoll)
#undef system
#define system(x) CM_BANNED(system)
#undef popen
#define popen(x, y) CM_BANNED(popen)

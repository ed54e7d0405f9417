# Warnings are errors everywhere; hardening and sanitizers are build options.
set(CM_WARNINGS
    -Wall -Wextra -Werror -Wformat=2 -Wformat-security -Wshadow -Wvla -Wmissing-prototypes
    -Wstrict-prototypes -Wimplicit-fallthrough -Wpointer-arith -Wcast-qual -Wundef -Wwrite-strings
    -Wno-unused-parameter -Wno-missing-field-initializers -Wnull-dereference -Wdouble-promotion
    -Wmissing-declarations -Wold-style-definition -Wredundant-decls -Wswitch-enum -Wno-switch-enum)

function(cm_apply_flags target)
  target_compile_options(${target} PRIVATE ${CM_WARNINGS})
  if(CM_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all
                                             -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(CM_HARDEN)
    target_compile_options(${target} PRIVATE -fPIE -fstack-protector-strong -U_FORTIFY_SOURCE
                                             -D_FORTIFY_SOURCE=3 -ftrivial-auto-var-init=zero
                                             -fstack-clash-protection -fcf-protection)
    target_link_options(${target} PRIVATE -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack)
  endif()
  if(CM_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined
                                             -fno-omit-frame-pointer)
    target_compile_definitions(${target} PRIVATE CM_FUZZING=1)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

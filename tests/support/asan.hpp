// IOLAB_TEST_ASAN: 1 when this build uses AddressSanitizer (g++ defines
// __SANITIZE_ADDRESS__, clang has __has_feature). The servers of the same
// build then run on ASan's allocator, whose quarantine and shadow memory make
// their RSS say little about the servers themselves.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define IOLAB_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IOLAB_TEST_ASAN 1
#endif
#endif
#ifndef IOLAB_TEST_ASAN
#define IOLAB_TEST_ASAN 0
#endif

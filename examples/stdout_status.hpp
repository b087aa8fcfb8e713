// The exit status of a program that writes its results to stdout: a write that failed (a full
// disk, a closed stdout, `> /dev/full`) makes it fail, never exit 0 with the results lost.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

inline int stdout_status(int rc) {
  errno = 0;
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0 || !std::cout) {
    std::cerr << "error: writing the results to stdout failed" << (errno != 0 ? std::string(": ") + std::strerror(errno) : "")
              << '\n';
    return rc != 0 ? rc : 1;
  }
  return rc;
}

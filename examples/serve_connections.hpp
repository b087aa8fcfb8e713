// The connection side of minillm-serve, which cpp-httplib 0.11 leaves to its users: a limit on
// open connections (the rest get 503 at once), a deadline for reading a whole request (a client
// that trickles its headers is cut off), keep-alive bounded in time and count, and a thread per
// admitted connection, so slow or idle clients never hold the threads others need. Handlers see
// their connection (they run on its thread) to notice a client that has hung up.
#pragma once

#include <httplib.h>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

namespace serve {

using Clock = std::chrono::steady_clock;

struct ConnectionLimits {
  size_t max_connections = 128;                      // open at once; more are answered 503 and closed
  std::chrono::milliseconds request_timeout{10000};  // request line, headers and body must arrive within this
  std::chrono::milliseconds keep_alive{5000};        // an idle connection waits this long for its next request
  size_t max_requests = 100;                         // per connection
  std::chrono::milliseconds write_timeout{10000};    // a client that reads nothing for this long is dropped
};

namespace detail {

// Waits until `fd` is ready for `events` (POLLIN or POLLOUT) or `timeout` passes.
inline bool wait_ready(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  const int ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  return ::poll(&p, 1, ms) > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
}

inline std::string address_of(const sockaddr_storage& a, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET6) {
    const auto& in = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &in.sin6_addr, buf, sizeof buf);
    port = ntohs(in.sin6_port);
  } else {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    port = ntohs(in.sin_port);
  }
  return buf;
}

}  // namespace detail

// The connection served by this thread.
class Connection {
 public:
  explicit Connection(int fd) : fd_(fd) { current_ = this; }
  ~Connection() { current_ = nullptr; }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The client closed or reset the connection (bytes it sent that are still unread mean it has not).
  bool gone() const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if ((p.revents & (POLLERR | POLLHUP)) != 0) return true;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  // The rest of the request cannot be read (a refused body): answer, then close.
  void close_after_response() { close_ = true; }
  bool closing() const { return close_; }

  // The connection of the calling thread; nullptr outside a handler.
  static Connection* current() { return current_; }

 private:
  int fd_;
  bool close_ = false;
  static inline thread_local Connection* current_ = nullptr;
};

// A socket as cpp-httplib's Stream; reads fail once the current request's deadline has passed.
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(int fd, const ConnectionLimits& limits) : fd_(fd), limits_(limits) {}

  void start_request() { deadline_ = Clock::now() + limits_.request_timeout; }

  bool is_readable() const override { return begin_ < end_ || wait_readable(); }
  bool is_writable() const override {
    return detail::wait_ready(fd_, POLLOUT, limits_.write_timeout) && (Connection::current() == nullptr || !Connection::current()->gone());
  }
  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      if (!wait_readable()) return -1;
      const auto n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - begin_);
    std::copy(buffer_ + begin_, buffer_ + begin_ + n, ptr);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!detail::wait_ready(fd_, POLLOUT, limits_.write_timeout)) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = address(::getpeername, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { ip = address(::getsockname, port); }
  socket_t socket() const override { return fd_; }

 private:
  bool wait_readable() const {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    return left.count() > 0 && detail::wait_ready(fd_, POLLIN, left);
  }
  template <class F>
  std::string address(F get, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    port = 0;
    if (get(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return {};
    return detail::address_of(a, port);
  }

  int fd_;
  const ConnectionLimits& limits_;
  Clock::time_point deadline_ = Clock::now();
  char buffer_[4096];
  size_t begin_ = 0, end_ = 0;
};

// httplib::Server with the limits above. `refusal` is the JSON body of the 503 for a connection
// over the limit.
class Server : public httplib::Server {
 public:
  Server(ConnectionLimits limits, std::string refusal) : limits_(limits), refusal_(std::move(refusal)) {
    // A thread per admitted connection, and a few for refusing the rest.
    new_task_queue = [n = limits_.max_connections + 4] { return new httplib::ThreadPool(n); };
  }

  size_t open_connections() const { return open_.load(); }

 private:
  // Overrides httplib's keep-alive loop (its only hook per connection).
  bool process_and_close_socket(socket_t sock) override {
    const bool admitted = open_.fetch_add(1) < limits_.max_connections;
    const bool ok = admitted ? serve(sock) : refuse(sock);
    open_.fetch_sub(1);
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  bool serve(int sock) {
    Connection connection(sock);
    SocketStream stream(sock, limits_);
    bool ok = true;
    for (size_t n = 0; n < limits_.max_requests && next_request(sock); ++n) {
      stream.start_request();
      bool closed = false;
      ok = process_request(stream, n + 1 == limits_.max_requests, closed, nullptr);
      if (!ok || closed || connection.closing()) break;
    }
    return ok;
  }

  // Waits for the next request's first byte, at most the keep-alive time, and less when stopping.
  bool next_request(int sock) const {
    const auto until = Clock::now() + limits_.keep_alive;
    while (is_running()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return false;
      if (detail::wait_ready(sock, POLLIN, std::min(left, std::chrono::milliseconds(100)))) return true;
    }
    return false;
  }

  // 503 without reading the request; then a short drain, so the client sees the answer rather
  // than a reset.
  bool refuse(int sock) const {
    const std::string response = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(refusal_.size()) + "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + refusal_;
    if (detail::wait_ready(sock, POLLOUT, std::chrono::milliseconds(1000)))
      (void)!::send(sock, response.data(), response.size(), MSG_NOSIGNAL);
    ::shutdown(sock, SHUT_WR);
    char sink[4096];
    const auto until = Clock::now() + std::chrono::milliseconds(200);
    while (Clock::now() < until && detail::wait_ready(sock, POLLIN, std::chrono::milliseconds(50)))
      if (::recv(sock, sink, sizeof sink, 0) <= 0) break;
    return false;
  }

  ConnectionLimits limits_;
  std::string refusal_;
  std::atomic<size_t> open_{0};
};

}  // namespace serve

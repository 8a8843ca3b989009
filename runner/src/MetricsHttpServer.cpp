#include "MetricsHttpServer.h"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace repshape {

namespace {

std::runtime_error systemError(const std::string& what) { return std::runtime_error(what + ": " + std::strerror(errno)); }

void sendAll(int fd, const std::string& data) {
  for (std::size_t sent = 0; sent < data.size();) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the scraper went away: nothing to do
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(const std::string& address, std::function<std::string()> page)
    : page_(std::move(page)) {
  const std::size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  const int port = std::stoi(address.substr(colon + 1));
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  if (host.size() > 2 && host.front() == '[') {
    family = AF_INET6;
    host = host.substr(1, host.size() - 2);
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) throw std::runtime_error("not an IPv6 address: " + host);
    length = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) throw std::runtime_error("not an IPv4 address: " + host);
    length = sizeof(sockaddr_in);
  }
  listenFd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) throw systemError("socket for " + address);
  const int one = 1;
  // Lets a restarted run reuse its fixed port while old connections linger (never a live listener).
  ::setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 || ::listen(listenFd_, 16) != 0) {
    const std::runtime_error error = systemError("cannot listen on " + address);
    ::close(listenFd_);
    throw error;
  }
  ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&storage), &length);
  port_ = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                                   : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  if (::pipe2(wakeFds_, O_CLOEXEC) != 0) {
    const std::runtime_error error = systemError("pipe");
    ::close(listenFd_);
    throw error;
  }
  thread_ = std::thread([this] { serve(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  if (thread_.joinable()) {
    const char byte = 0;
    if (::write(wakeFds_[1], &byte, 1) == 1) thread_.join();
    else thread_.detach();  // cannot happen with a fresh pipe; never block the run's exit
  }
  for (int fd : {listenFd_, wakeFds_[0], wakeFds_[1]})
    if (fd >= 0) ::close(fd);
}

void MetricsHttpServer::serve() {
  while (true) {
    pollfd fds[2] = {{listenFd_, POLLIN, 0}, {wakeFds_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int client = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    answer(client);
    ::close(client);
  }
}

// One request per connection (Connection: close); scrapes are seconds apart, so one at a time.
void MetricsHttpServer::answer(int client) {
  timeval timeout{5, 0};  // a client that stalls mid-request cannot hold the endpoint
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  std::string request;
  char buffer[4096];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
    const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
    if (n <= 0) return;
    request.append(buffer, static_cast<std::size_t>(n));
  }
  const std::string line = request.substr(0, request.find("\r\n"));
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
  if (line.rfind("GET ", 0) != 0) {
    status = "405 Method Not Allowed";
    type = "text/plain";
    body = "only GET\n";
  } else if (const std::string path = line.substr(4, line.find(' ', 4) - 4);
             path != "/metrics" && path.rfind("/metrics?", 0) != 0) {
    status = "404 Not Found";
    type = "text/plain";
    body = "see /metrics\n";
  } else {
    body = page_();
  }
  sendAll(client, "HTTP/1.1 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
}

}  // namespace repshape

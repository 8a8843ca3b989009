#pragma once
// A minimal HTTP/1.0 GET over a loopback socket (tests only): enough to scrape /metrics without
// pulling an HTTP client library into the tests.

#include <cstring>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace repshape::test {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// GET http://HOST:PORT/PATH with HOST an IPv4 literal; throws std::runtime_error on socket errors.
inline HttpResponse httpGet(const std::string& address, const std::string& path = "/metrics") {
  const auto colon = address.rfind(':');
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr) != 1)
    throw std::runtime_error("not an IPv4 address: " + address);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{10, 0};  // a hung server fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("connect " + address + ": " + error);
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + address + "\r\n\r\n";
  ::send(fd, request.data(), request.size(), 0);
  std::string raw;
  char buffer[8192];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) raw.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  HttpResponse response;
  const auto headerEnd = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/", 0) != 0 || headerEnd == std::string::npos)
    throw std::runtime_error("malformed HTTP response from " + address + ": " + raw.substr(0, 200));
  response.status = std::stoi(raw.substr(raw.find(' ') + 1, 3));
  response.body = raw.substr(headerEnd + 4);
  return response;
}

}  // namespace repshape::test

#pragma once
// The /metrics endpoint: one background thread answering GET /metrics with a page made on demand.
//
// Why not prometheus::Exposer: its civetweb server starts every thread with a fixed 100 KiB stack
// (libcivetweb.so.1 1.15 calls pthread_attr_setstacksize(102400)), and with libtorch_cpu loaded the
// static TLS of the process no longer fits in that (measured: pthread_create fails with EINVAL at
// 64 and 100 KiB, works at 128 KiB), so Exposer throws "null context when constructing
// CivetServer" in every repshape process. prometheus-cpp still provides the registry, the metric
// types, the text serialisation and the Pushgateway client; this class only moves the bytes.

#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace repshape {

class MetricsHttpServer {
 public:
  // Binds `address` ("HOST:PORT", HOST an IPv4 or [IPv6] literal, PORT 0 = ephemeral) and starts
  // serving. Throws std::runtime_error with the address and the system's reason (e.g. "Address
  // already in use").
  MetricsHttpServer(const std::string& address, std::function<std::string()> page);
  ~MetricsHttpServer();  // stops the thread and closes the socket; never throws
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  void serve();
  void answer(int client);

  std::function<std::string()> page_;
  int listenFd_ = -1;
  int wakeFds_[2] = {-1, -1};  // self-pipe: the destructor wakes the poll() of serve()
  int port_ = 0;
  std::thread thread_;
};

}  // namespace repshape

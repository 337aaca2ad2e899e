// dim::http::Client on one reused libcurl easy handle (keep-alive), and
// UrlEncode. curl's callbacks are C callbacks: they catch everything and
// report failure to curl by returning a short count.
#include <curl/curl.h>

#include <cstring>
#include <strings.h>

#include <cctype>
#include <memory>
#include <string>
#include <utility>

#include "dim/http.h"

namespace dim::http {

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// curl_slist_append returns the (possibly new) head, or nullptr leaving the
// list as it was.
bool Append(SlistPtr& list, const char* line) {
  curl_slist* head = curl_slist_append(list.get(), line);
  if (head == nullptr) return false;
  (void)list.release();  // head is the same list, or a new one when it was empty
  list.reset(head);
  return true;
}

// curl_global_init is not thread-safe and must run once before any handle;
// a function-local static gives exactly that, and lives for the process.
CURLcode GlobalInitOnce() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  return rc;
}

size_t OnBody(char* data, size_t size, size_t nmemb, void* userdata) {
  try {
    static_cast<std::string*>(userdata)->append(data, size * nmemb);
    return size * nmemb;
  } catch (...) {
    return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
  }
}

size_t OnHeader(char* data, size_t size, size_t nmemb, void* userdata) {
  const size_t n = size * nmemb;
  try {
    auto* headers = static_cast<std::map<std::string, std::string>*>(userdata);
    std::string_view line(data, n);
    // Interim responses (100 Continue) and redirects each start with a status
    // line; only the final response's fields count.
    if (line.starts_with("HTTP/")) {
      headers->clear();
      return n;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return n;  // blank line, folding
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ' ||
                              value.back() == '\t'))
      value.remove_suffix(1);
    auto [it, inserted] = headers->try_emplace(std::move(name), value);
    if (!inserted) (it->second += ", ") += value;
    return n;
  } catch (...) {
    return 0;
  }
}

class CurlClient final : public Client {
 public:
  CurlClient(CurlPtr curl, ClientOptions opts) : curl_(std::move(curl)), opts_(opts) {}

  Result<ClientResponse> Get(const std::string& url,
                             const std::map<std::string, std::string>& headers,
                             long timeout_ms) override {
    return Perform("GET", url, nullptr, headers, timeout_ms);
  }

  Result<ClientResponse> Post(const std::string& url, const std::string& body,
                              const std::map<std::string, std::string>& headers,
                              long timeout_ms) override {
    return Perform("POST", url, &body, headers, timeout_ms);
  }

  Result<ClientResponse> Put(const std::string& url, const std::string& body,
                             const std::map<std::string, std::string>& headers,
                             long timeout_ms) override {
    return Perform("PUT", url, &body, headers, timeout_ms);
  }

 private:
  Result<ClientResponse> Perform(const char* method, const std::string& url,
                                 const std::string* body,
                                 const std::map<std::string, std::string>& headers,
                                 long timeout_ms) {
    const std::string what = std::string(method) + " " + url;
    SlistPtr list;
    bool have_content_type = false;
    for (const auto& [name, value] : headers) {
      if (name.empty() || name.find_first_of(":\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos ||
          name.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
        return Status::InvalidArgument(what + ": invalid request header \"" + name + "\"");
      if (strcasecmp(name.c_str(), "content-type") == 0) have_content_type = true;
      // "Name;" is curl's spelling of a header with an empty value.
      const std::string line = value.empty() ? name + ";" : name + ": " + value;
      if (!Append(list, line.c_str())) return Status::IOError(what + ": out of memory");
    }
    if (body != nullptr && !have_content_type) {
      // Not curl's form-urlencoded default: dim posts JSON or raw bytes.
      if (!Append(list, "Content-Type: application/octet-stream"))
        return Status::IOError(what + ": out of memory");
    }

    ClientResponse resp;
    CURL* c = curl_.get();
    // Reset clears the previous request's options but keeps open connections.
    curl_easy_reset(c);
    char errbuf[CURL_ERROR_SIZE] = "";
    bool set_ok = true;
    auto set = [&set_ok](CURLcode rc) { set_ok = set_ok && rc == CURLE_OK; };
    set(curl_easy_setopt(c, CURLOPT_URL, url.c_str()));
    set(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L));  // no SIGALRM for timeouts: threads
#if LIBCURL_VERSION_NUM >= 0x075500
    set(curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https"));
#else
    set(curl_easy_setopt(c, CURLOPT_PROTOCOLS, long{CURLPROTO_HTTP | CURLPROTO_HTTPS}));
#endif
    set(curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf));
    set(curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms));
    set(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : opts_.timeout_ms));
    set(curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L));  // long-polls sit idle
    set(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody));
    set(curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp.body));
    set(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader));
    set(curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp.headers));
    set(curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get()));
    if (body != nullptr) {
      set(curl_easy_setopt(c, CURLOPT_POST, 1L));
      set(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data()));
      set(curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size())));
      if (std::strcmp(method, "POST") != 0) set(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method));
    } else {
      set(curl_easy_setopt(c, CURLOPT_HTTPGET, 1L));
    }
    if (!set_ok) return Status::IOError(what + ": cannot configure libcurl");

    const CURLcode rc = curl_easy_perform(c);
    // Drop curl's pointers to this frame's buffers before they go away.
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
    if (rc != CURLE_OK) {
      const std::string msg = what + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
      if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
        return Status::InvalidArgument(msg);
      return Status::IOError(msg);
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    resp.status = static_cast<int>(status);
    return resp;
  }

  CurlPtr curl_;
  const ClientOptions opts_;
};

}  // namespace

Result<std::unique_ptr<Client>> Client::Create(ClientOptions opts) {
  if (const CURLcode rc = GlobalInitOnce(); rc != CURLE_OK)
    return Status::IOError(std::string("libcurl initialisation failed: ") + curl_easy_strerror(rc));
  CurlPtr curl(curl_easy_init());
  if (!curl) return Status::IOError("libcurl: cannot create a handle (out of memory?)");
  return std::unique_ptr<Client>(std::make_unique<CurlClient>(std::move(curl), opts));
}

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    // Explicit ranges: std::isalnum would depend on the locale.
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace dim::http

#include "http_response.h"

#include <algorithm>
#include <cctype>

namespace dim::http {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 || std::string_view("()<>@,;:\\\"/[]?={}").find(static_cast<char>(c)) !=
                                   std::string_view::npos)
      return false;
  }
  return true;
}

// "1234", or a list of equal values ("1234, 1234": a repeated header).
bool ParseLength(std::string_view v, uint64_t* out) {
  bool any = false;
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = Trim(v.substr(0, comma));
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    if (item.empty() || item.size() > 18) return false;
    uint64_t n = 0;
    for (char c : item) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (any && n != *out) return false;
    *out = n;
    any = true;
  }
  return any;
}

Status Malformed(const std::string& what) {
  return Status::Corruption("malformed HTTP response: " + what);
}

}  // namespace

Status ResponseReader::TooLarge(uint64_t size) const {
  return Status::Corruption("the answer's body" + (size ? " of " + std::to_string(size) + " bytes" : std::string()) +
                            " is larger than this request accepts (" + std::to_string(max_body_) +
                            " bytes); a broken or hostile server");
}

Status ResponseReader::Append(std::string_view bytes) {
  if (body_bytes_ + bytes.size() > max_body_) return TooLarge(0);
  body_bytes_ += bytes.size();
  if (!discard_) resp_.body.append(bytes);
  return Status::Ok();
}

Result<bool> ResponseReader::TakeLine(std::string_view data, size_t* used) {
  size_t lf = data.find('\n');
  size_t take = lf == std::string_view::npos ? data.size() : lf + 1;
  if (line_.size() + take > kMaxHead) return Malformed("line over 64 KiB");
  line_.append(data.substr(0, take));
  *used += take;
  if (lf == std::string_view::npos) return false;
  line_.pop_back();  // '\n'
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  return true;
}

Status ResponseReader::ParseHead(std::string_view head) {
  resp_ = ClientResponse();
  body_bytes_ = 0;
  size_t eol = head.find('\n');
  std::string_view status_line = Trim(head.substr(0, eol));
  head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
  // "HTTP/1.1 200 OK": version, three digits, an optional reason.
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") || status_line[8] != ' ' ||
      !std::isdigit(static_cast<unsigned char>(status_line[7])) ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return Malformed("status line \"" + std::string(status_line.substr(0, 80)) + "\"");
  }
  int code = 0;
  for (size_t i = 9; i < 12; i++) {
    if (!std::isdigit(static_cast<unsigned char>(status_line[i]))) return Malformed("status code");
    code = code * 10 + (status_line[i] - '0');
  }
  if (code < 100) return Malformed("status code " + std::to_string(code));
  resp_.status = code;
  const bool http10 = status_line[7] == '0';

  std::string last;  // the field a folded line continues
  while (!head.empty()) {
    eol = head.find('\n');
    std::string_view line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') {  // obsolete folding
      if (last.empty()) return Malformed("continuation before any header");
      (resp_.headers[last] += ' ') += Trim(line);
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      return Malformed("header line \"" + std::string(line.substr(0, 80)) + "\"");
    }
    last = Lower(line.substr(0, colon));
    std::string_view value = Trim(line.substr(colon + 1));
    auto [it, inserted] = resp_.headers.try_emplace(last, value);
    if (!inserted) (it->second += ", ") += value;
  }

  std::string connection = Lower(resp_.headers.count("connection") ? resp_.headers["connection"] : "");
  keep_alive_ = http10 ? connection.find("keep-alive") != std::string::npos
                       : connection.find("close") == std::string::npos;
  if (code < 200) {  // 100 Continue and friends: the real response follows
    state_ = State::kHead;
    return Status::Ok();
  }
  if (code == 204 || code == 304) {
    state_ = State::kDone;
    return Status::Ok();
  }
  if (auto te = resp_.headers.find("transfer-encoding"); te != resp_.headers.end()) {
    std::string codings = Lower(te->second);
    std::string_view v = Trim(codings);
    if (!v.ends_with("chunked")) return Malformed("transfer-encoding \"" + te->second + "\"");
    state_ = State::kChunkSize;
    return Status::Ok();
  }
  if (auto cl = resp_.headers.find("content-length"); cl != resp_.headers.end()) {
    if (!ParseLength(cl->second, &remaining_)) {
      return Malformed("content-length \"" + cl->second.substr(0, 40) + "\"");
    }
    if (remaining_ > max_body_) return TooLarge(remaining_);
    if (!discard_) resp_.body.reserve(std::min<uint64_t>(remaining_, 256 << 20));
    state_ = remaining_ == 0 ? State::kDone : State::kBody;
    return Status::Ok();
  }
  keep_alive_ = false;  // the body ends where the connection does
  state_ = State::kToClose;
  return Status::Ok();
}

Result<size_t> ResponseReader::Feed(std::string_view data) {
  size_t used = 0;
  if (!data.empty()) started_ = true;
  while (used < data.size() && state_ != State::kDone) {
    std::string_view rest = data.substr(used);
    switch (state_) {
      case State::kHead: {
        // The head ends at the first empty line; look back 3 bytes for a
        // terminator split across calls.
        size_t from = head_.size() < 3 ? 0 : head_.size() - 3;
        size_t take = std::min(rest.size(), kMaxHead + 4 - head_.size());
        head_.append(rest.substr(0, take));
        size_t end = std::string::npos, len = 0;
        for (size_t p = head_.find('\n', from); p != std::string::npos; p = head_.find('\n', p + 1)) {
          if (p + 1 < head_.size() && head_[p + 1] == '\n') {
            end = p, len = 2;
            break;
          }
          if (p + 2 < head_.size() && head_[p + 1] == '\r' && head_[p + 2] == '\n') {
            end = p, len = 3;
            break;
          }
        }
        if (end == std::string::npos) {
          if (head_.size() > kMaxHead) return Malformed("head over 64 KiB");
          used += take;
          break;
        }
        size_t head_len = end + len;
        used += take - (head_.size() - head_len);
        std::string head = std::move(head_);
        head.resize(head_len);
        head_.clear();
        DIM_RETURN_IF_ERROR(ParseHead(head));
        break;
      }
      case State::kBody:
      case State::kChunkData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
        DIM_RETURN_IF_ERROR(Append(rest.substr(0, take)));
        used += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = state_ == State::kBody ? State::kDone : State::kChunkEnd;
        break;
      }
      case State::kChunkSize: {
        DIM_ASSIGN_OR_RETURN(bool complete, TakeLine(rest, &used));
        if (!complete) break;
        std::string_view size = Trim(std::string_view(line_).substr(0, line_.find(';')));
        if (size.empty() || size.size() > 15) return Malformed("chunk size \"" + line_.substr(0, 40) + "\"");
        uint64_t n = 0;
        for (char c : size) {
          int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f')                   ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F')                   ? c - 'A' + 10
                                                             : -1;
          if (d < 0) return Malformed("chunk size \"" + line_.substr(0, 40) + "\"");
          n = n * 16 + static_cast<uint64_t>(d);
        }
        line_.clear();
        if (n > max_body_) return TooLarge(n);
        remaining_ = n;
        state_ = n == 0 ? State::kTrailers : State::kChunkData;
        break;
      }
      case State::kChunkEnd: {
        DIM_ASSIGN_OR_RETURN(bool complete, TakeLine(rest, &used));
        if (!complete) break;
        if (!line_.empty()) return Malformed("chunk not followed by CRLF");
        state_ = State::kChunkSize;
        break;
      }
      case State::kTrailers: {
        DIM_ASSIGN_OR_RETURN(bool complete, TakeLine(rest, &used));
        if (!complete) break;
        if (line_.empty()) state_ = State::kDone;  // trailer fields are ignored
        line_.clear();
        break;
      }
      case State::kToClose:
        DIM_RETURN_IF_ERROR(Append(rest));
        used += rest.size();
        break;
      case State::kDone:
        break;
    }
  }
  return used;
}

Status ResponseReader::Finish() {
  if (state_ == State::kToClose) state_ = State::kDone;
  if (state_ == State::kDone) return Status::Ok();
  keep_alive_ = false;
  return Status::IOError(started_ ? "the server closed the connection in the middle of its answer"
                                  : "the server closed the connection without answering");
}

}  // namespace dim::http

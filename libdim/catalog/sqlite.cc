#include "dim/sqlite.h"

#include <sqlite3.h>

namespace dim::sql {

Stmt::Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_), status_(std::move(o.status_)) {
  needs_reset_ = o.needs_reset_;
  o.s_ = nullptr;
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    db_ = o.db_;
    s_ = o.s_;
    status_ = std::move(o.status_);
    needs_reset_ = o.needs_reset_;
    o.s_ = nullptr;
  }
  return *this;
}

Stmt::~Stmt() {
  if (s_) sqlite3_finalize(s_);
}

void Stmt::Reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
  needs_reset_ = false;
  status_ = Status::Ok();
}

Stmt& Stmt::Bind(int i, int64_t v) {
  if (needs_reset_) Reset();
  sqlite3_bind_int64(s_, i, v);
  return *this;
}

Stmt& Stmt::Bind(int i, std::string_view text) {
  if (needs_reset_) Reset();
  sqlite3_bind_text(s_, i, text.data() ? text.data() : "", static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::BindBlob(int i, std::string_view bytes) {
  if (needs_reset_) Reset();
  sqlite3_bind_blob(s_, i, bytes.data() ? bytes.data() : "", static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::BindNull(int i) {
  if (needs_reset_) Reset();
  sqlite3_bind_null(s_, i);
  return *this;
}

bool Stmt::Step() {
  if (needs_reset_) {
    sqlite3_reset(s_);
    needs_reset_ = false;
  }
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  needs_reset_ = true;
  if (rc != SQLITE_DONE) {
    status_ = db_->Error(std::string("statement '") + sqlite3_sql(s_) + "'");
  }
  return false;
}

Status Stmt::Run() {
  while (Step()) {
  }
  Status s = status_;
  // Keep bindings so a caller may re-run; the next Bind resets.
  return s;
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(s_, col); }

std::string Stmt::Text(int col) const { return std::string(View(col)); }

std::string_view Stmt::View(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  if (!p) return {};
  return {static_cast<const char*>(p), static_cast<size_t>(n)};
}

bool Stmt::IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

int Stmt::ColumnCount() const { return sqlite3_column_count(s_); }

std::string Stmt::ColumnName(int col) const {
  const char* n = sqlite3_column_name(s_, col);
  return n ? n : "";
}

Stmt::Type Stmt::ColumnType(int col) const {
  switch (sqlite3_column_type(s_, col)) {
    case SQLITE_NULL: return Type::kNull;
    case SQLITE_TEXT: return Type::kText;
    case SQLITE_BLOB: return Type::kBlob;
    default: return Type::kInteger;
  }
}

namespace {

// SQLite's process-wide settings, made once before this process's first
// connection (imaged, dimctl, rootfs-fuse and the tools all open through
// Db::Open). Memory statistics off: with them every allocation of every
// connection takes one global mutex, and a storm of 5,000 boot requests
// queued on it (sqlite3Malloc). Fails only after sqlite3_initialize, which
// nothing in dim calls first.
bool ConfigureSqlite() { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK; }

}  // namespace

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, Mode mode) {
  [[maybe_unused]] static const bool configured = ConfigureSqlite();
  sqlite3* raw = nullptr;
  int flags = mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY
                                      : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;  // one connection per thread; dim never shares a Db
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  std::unique_ptr<Db> db(new Db(raw, path));
  if (rc != SQLITE_OK) {
    if (!raw) return Status::IOError("open catalogue " + path + ": out of memory");
    Status s = db->Error("open catalogue");
    if (rc == SQLITE_CANTOPEN) {
      return Status::NotFound("cannot open catalogue " + path +
                              " (does the store exist? create it with 'dimctl store init')");
    }
    return s;
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  if (mode == Mode::kReadWrite) {
    // WAL: readers never block the writer; NORMAL sync is durable at checkpoint
    // boundaries and crash-consistent always; commits that must survive power
    // loss call Exec("PRAGMA wal_checkpoint") or use synchronous=FULL below.
    DIM_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  }
  DIM_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON;"));
  return db;
}

Db::~Db() {
  cached_.clear();  // statements before the connection
  if (db_) sqlite3_close_v2(db_);
}

Result<Stmt*> Db::Cached(const std::string& sql) {
  auto it = cached_.find(sql);
  if (it == cached_.end()) {
    DIM_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
    it = cached_.emplace(sql, std::make_unique<Stmt>(std::move(s))).first;
  }
  it->second->Reset();
  return it->second.get();
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return Error("prepare '" + std::string(sql) + "'");
  return Stmt(this, s);
}

Status Db::Exec(std::string_view sql) {
  char* err = nullptr;
  std::string q(sql);
  int rc = sqlite3_exec(db_, q.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Status base = Error("exec");
    return Status(base.code(), "catalogue " + path_ + ": " + msg);
  }
  return Status::Ok();
}

int64_t Db::LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
int Db::Changes() const { return sqlite3_changes(db_); }

Status Db::Error(const std::string& what) const {
  int rc = db_ ? sqlite3_extended_errcode(db_) : SQLITE_ERROR;
  std::string msg = "catalogue " + path_ + ": " + what + ": " +
                    (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Busy(msg + " (another dimctl is writing; retry when it finishes)");
    case SQLITE_FULL:
      return Status::NoSpace(msg + " (free space on the store's filesystem, then retry)");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(msg);
    case SQLITE_CONSTRAINT:
      return Status::AlreadyExists(msg);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Status::PermissionDenied(msg);
    case SQLITE_CANTOPEN:
      return Status::NotFound(msg);
    default:
      return Status::IOError(msg);
  }
}

Result<std::unique_ptr<Transaction>> Transaction::Begin(Db& db) {
  DIM_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  return std::unique_ptr<Transaction>(new Transaction(db));
}

Transaction::~Transaction() {
  if (!done_) (void)db_.Exec("ROLLBACK");
}

Status Transaction::Commit() {
  Status s = db_.Exec("COMMIT");
  if (s.ok()) done_ = true;
  return s;
}

}  // namespace dim::sql

// A thin RAII layer over SQLite: one Db handle, prepared statements that reset
// themselves, transactions that roll back unless committed. Errors come back as
// dim::Status naming the database file and the statement.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dim/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace dim::sql {

class Db;

// A prepared statement. Bind with 1-based indexes, then Step() until it returns
// false. Reset happens automatically on the next Bind after a completed run.
class Stmt {
 public:
  Stmt() = default;
  Stmt(Stmt&&) noexcept;
  Stmt& operator=(Stmt&&) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view text);  // bound as TEXT
  Stmt& BindBlob(int i, std::string_view bytes);
  Stmt& BindNull(int i);

  // Runs one step: true when a row is available, false when done. Errors are
  // returned through status() afterwards (and Step returns false).
  bool Step();
  // Runs to completion, for statements that return no rows.
  Status Run();
  const Status& status() const { return status_; }
  void Reset();

  int64_t Int(int col) const;
  std::string Text(int col) const;  // TEXT or BLOB as bytes
  std::string_view View(int col) const;  // valid until the next Step
  bool IsNull(int col) const;
  // The row's column count and a column's name and type (kInteger, kText,
  // kBlob or kNull; REAL values are read as integers where dim stores none).
  enum class Type { kInteger, kText, kBlob, kNull };
  int ColumnCount() const;
  std::string ColumnName(int col) const;
  Type ColumnType(int col) const;

 private:
  friend class Db;
  Stmt(Db* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Db* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  Status status_;
  bool needs_reset_ = false;
};

class Db {
 public:
  enum class Mode { kReadWrite, kReadOnly };
  // Opens (creating when ReadWrite) with WAL, foreign keys and a busy timeout.
  static Result<std::unique_ptr<Db>> Open(const std::string& path, Mode mode = Mode::kReadWrite);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Result<Stmt> Prepare(std::string_view sql);
  // A statement prepared once per connection and reused (hot lookups): reset
  // and unbound on every call. Not for a query nested in its own iteration.
  Result<Stmt*> Cached(const std::string& sql);
  Status Exec(std::string_view sql);  // one or more statements, no rows
  int64_t LastInsertId() const;
  int Changes() const;
  const std::string& path() const { return path_; }
  sqlite3* raw() { return db_; }

  // The SQLite error for the last call, as a Status that names the database.
  Status Error(const std::string& what) const;

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::unordered_map<std::string, std::unique_ptr<Stmt>> cached_;
};

// BEGIN IMMEDIATE on construction (takes the write lock now, so a concurrent
// writer fails fast instead of deadlocking later); ROLLBACK on destruction
// unless Commit() succeeded.
class Transaction {
 public:
  static Result<std::unique_ptr<Transaction>> Begin(Db& db);
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Db& db) : db_(db) {}
  Db& db_;
  bool done_ = false;
};

}  // namespace dim::sql

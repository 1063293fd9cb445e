// OutputFile for JavaScript: the writer every tripdump output goes through (dump/output_file.h: mode 0600,
// an unnamed O_TMPFILE in the destination directory, linked under its final name only when complete, so a
// writer killed at any moment leaves nothing behind; O_EXCL semantics on the final name). JS streams into
// it (a heap snapshot arrives in chunks and is never held whole); writes run on the libuv pool, one at a
// time, in order.
#include <napi.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dump/output_file.h"
#include "inspector/json_string.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

namespace {

class OutputFileWrap : public Napi::ObjectWrap<OutputFileWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "OutputFile",
        {InstanceMethod("write", &OutputFileWrap::write),
         InstanceMethod("writeJsonText", &OutputFileWrap::write_json_text),
         InstanceMethod("commit", &OutputFileWrap::commit), InstanceMethod("close", &OutputFileWrap::close)});
  }

  // new OutputFile(path, overwrite): throws EEXIST at once when the name is taken (and not overwrite).
  explicit OutputFileWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OutputFileWrap>(info) {
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const bool overwrite = info[1].ToBoolean().Value();
    file_ = guarded(info.Env(), [&] { return std::make_unique<dump::OutputFile>(path, overwrite, 0); });
  }

 private:
  class Write : public Napi::AsyncWorker {
   public:
    // data: a Buffer or an Array of Buffers, written in order. json: each is a JSON string literal's
    // contents, written as the text it stands for.
    Write(Napi::Env env, OutputFileWrap* owner, Napi::Value data, bool json)
        : Napi::AsyncWorker(env, "tripdump:output-file"),
          owner_(owner),
          deferred_(Napi::Promise::Deferred::New(env)),
          json_(json) {
      auto add = [&](Napi::Value v) {
        if (!v.IsBuffer()) throw Napi::TypeError::New(env, "write() takes a Buffer or an Array of Buffers");
        auto b = v.As<Napi::Buffer<uint8_t>>();
        pieces_.emplace_back(reinterpret_cast<const char*>(b.Data()), b.Length());
      };
      if (data.IsArray()) {
        auto a = data.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) add(a.Get(i));
      } else {
        add(data);
      }
      data_ = Napi::Persistent(data);
      owner->busy_ = true;
      self_ = Napi::Persistent(owner->Value());
    }
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try {
        uint64_t at = owner_->size_;
        std::string text;
        for (std::string_view piece : pieces_) {
          if (json_) {
            text.clear();
            if (!inspector::json_unescape(piece, text)) {
              error_ = std::make_unique<SysError>(EILSEQ, "write", std::string(), 0,
                                                  "not the contents of a JSON string");
              return;
            }
            piece = text;
          }
          // write_sparse streams what lies behind to disk (write-behind) instead of filling the page cache.
          owner_->file_->write_sparse(reinterpret_cast<const uint8_t*>(piece.data()), piece.size(), at);
          at += piece.size();
          written_ += piece.size();
        }
      } catch (const SysError& e) {
        error_ = std::make_unique<SysError>(e);
      }
    }
    void OnOK() override {
      owner_->busy_ = false;
      owner_->size_ += written_;
      if (error_)
        deferred_.Reject(to_js_error(Env(), *error_).Value());
      else
        deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(written_)));
    }
    void OnError(const Napi::Error& e) override {
      owner_->busy_ = false;
      deferred_.Reject(e.Value());
    }

   private:
    OutputFileWrap* owner_;
    Napi::Promise::Deferred deferred_;
    std::vector<std::string_view> pieces_;
    Napi::Reference<Napi::Value> data_;
    Napi::ObjectReference self_;
    bool json_;
    uint64_t written_ = 0;
    std::unique_ptr<SysError> error_;
  };

  void check_open(Napi::Env env) const {
    if (!file_) throw Napi::Error::New(env, "the output file is closed");
    if (busy_) throw Napi::Error::New(env, "a write is in flight: await it first");
  }

  Napi::Value queue(const Napi::CallbackInfo& info, bool json) {
    check_open(info.Env());
    auto* w = new Write(info.Env(), this, info[0], json);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  // write(buffer | buffers) -> Promise<bytes written>: appends.
  Napi::Value write(const Napi::CallbackInfo& info) { return queue(info, false); }

  // writeJsonText(buffer | buffers) -> Promise<bytes written>: appends the text the contents of JSON string
  // literals stand for (EILSEQ when they are malformed; what came before is written).
  Napi::Value write_json_text(const Napi::CallbackInfo& info) { return queue(info, true); }

  // commit(): gives the file its final name (EEXIST if it appeared meanwhile, unless overwrite).
  Napi::Value commit(const Napi::CallbackInfo& info) {
    check_open(info.Env());
    guarded(info.Env(), [&] {
      // write_sparse leaves an all-zero tail as a hole: the size is set explicitly.
      file_->set_size(size_);
      file_->commit();
    });
    file_.reset();
    return info.Env().Undefined();
  }

  // close(): releases the file; uncommitted, nothing is left behind. Idempotent.
  Napi::Value close(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "a write is in flight: await it first");
    file_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<dump::OutputFile> file_;
  uint64_t size_ = 0;
  bool busy_ = false;
};

}  // namespace

void init_output_file(Napi::Env env, Napi::Object exports) {
  exports.Set("OutputFile", OutputFileWrap::define(env));
}

}  // namespace tripdump::napi

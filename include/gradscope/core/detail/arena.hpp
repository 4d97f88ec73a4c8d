#pragma once
// A bump allocator whose blocks are kept across reset(): after the first pass over a fixed
// workload, allocating is a pointer increment and nothing reaches the heap.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <vector>

namespace gradscope::detail {

class Arena {
 public:
  static constexpr std::size_t alignment = 64;

  explicit Arena(std::size_t first_block = std::size_t{1} << 20) : first_block_(first_block) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (auto& b : blocks_) ::operator delete[](b.data, std::align_val_t{alignment});
  }

  /// Raw, 64-byte aligned, uninitialised storage for `bytes` bytes. The common case (room in the
  /// current block) is a few instructions, small enough to inline; moving on to the next block, or
  /// reserving a new one, is out of line.
  void* allocate(std::size_t bytes) {
    bytes = (bytes + alignment - 1) & ~(alignment - 1);
    if (current_ < blocks_.size())
      if (void* p = blocks_[current_].take(bytes)) return p;
    return allocate_slow(bytes);
  }

  /// Typed storage for n values, uninitialised.
  template <class U>
  U* allocate_array(std::size_t n) {
    return static_cast<U*>(allocate(std::max<std::size_t>(n, 1) * sizeof(U)));
  }

  /// Typed storage for n values, zero-filled.
  template <class U>
  U* allocate_zeroed(std::size_t n) {
    U* p = allocate_array<U>(n);
    std::memset(static_cast<void*>(p), 0, std::max<std::size_t>(n, 1) * sizeof(U));
    return p;
  }

  /// Forgets every allocation but keeps the blocks for reuse.
  void reset() {
    for (auto& b : blocks_) b.used = 0;
    current_ = 0;
  }

  /// Bytes reserved from the heap so far.
  std::size_t capacity() const {
    std::size_t total = 0;
    for (const auto& b : blocks_) total += b.size;
    return total;
  }

  /// Bytes handed out since the last reset.
  std::size_t used() const {
    std::size_t total = 0;
    for (const auto& b : blocks_) total += b.used;
    return total;
  }

 private:
  [[gnu::noinline]] void* allocate_slow(std::size_t bytes) {
    for (; current_ < blocks_.size(); ++current_)
      if (void* p = blocks_[current_].take(bytes)) return p;
    const std::size_t last = blocks_.empty() ? first_block_ : blocks_.back().size * 2;
    const std::size_t size = std::max(last, bytes);
    auto* data = static_cast<std::byte*>(::operator new[](size, std::align_val_t{alignment}));
    blocks_.push_back(Block{data, size, bytes});
    current_ = blocks_.size() - 1;
    return data;
  }

  struct Block {
    std::byte* data;
    std::size_t size;
    std::size_t used;
    /// `bytes` more from this block, or nullptr when they do not fit.
    void* take(std::size_t bytes) {
      if (used + bytes > size) return nullptr;
      void* p = data + used;
      used += bytes;
      return p;
    }
  };
  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  std::size_t first_block_;
};

}  // namespace gradscope::detail

#pragma once
// A bump allocator whose blocks are kept across reset(): after the first pass over a fixed
// workload, allocating is a pointer increment and nothing reaches the heap.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <vector>

#include "../types.hpp"

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
  GRADSCOPE_ALWAYS_INLINE void* allocate(std::size_t bytes) {
    bytes = (bytes + alignment - 1) & ~(alignment - 1);
    if (bytes <= static_cast<std::size_t>(end_ - next_)) [[likely]] {
      void* p = next_;
      next_ += bytes;
      return p;
    }
    return allocate_slow(bytes);
  }

  /// Typed storage for n values, uninitialised.
  template <class U>
  GRADSCOPE_ALWAYS_INLINE U* allocate_array(std::size_t n) {
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
    if (blocks_.empty()) return;
    start_block(0, 0);
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
    for (std::size_t k = 0; k < blocks_.size(); ++k)
      total += k == current_ ? static_cast<std::size_t>(next_ - blocks_[k].data) : blocks_[k].used;
    return total;
  }

 private:
  // The current block is full: the next block with room (kept from before a reset), or a new one
  // twice the size of the last.
  [[gnu::noinline]] void* allocate_slow(std::size_t bytes) {
    if (!blocks_.empty()) {
      blocks_[current_].used = static_cast<std::size_t>(next_ - blocks_[current_].data);
      for (std::size_t k = current_ + 1; k < blocks_.size(); ++k)
        if (bytes <= blocks_[k].size) return start_block(k, bytes);
    }
    const std::size_t last = blocks_.empty() ? first_block_ : blocks_.back().size * 2;
    const std::size_t size = std::max(last, bytes);
    auto* data = static_cast<std::byte*>(::operator new[](size, std::align_val_t{alignment}));
    blocks_.push_back(Block{data, size, 0});
    return start_block(blocks_.size() - 1, bytes);
  }
  // Makes block k (empty) the current one and takes `bytes` from it.
  void* start_block(std::size_t k, std::size_t bytes) {
    current_ = k;
    std::byte* data = blocks_[k].data;
    next_ = data + bytes;
    end_ = data + blocks_[k].size;
    return data;
  }

  struct Block {
    std::byte* data;
    std::size_t size;
    std::size_t used;  // for blocks before the current one; the current one's is next_ - data
  };
  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  // The free part of the current block: allocating is a compare and an increment.
  std::byte* next_ = nullptr;
  std::byte* end_ = nullptr;
  std::size_t first_block_;
};

}  // namespace gradscope::detail

#pragma once

/// Library version, dependency-free so it can be included anywhere.
namespace gradscope {

/// Components of the semantic version of this gradscope release.
inline constexpr int version_major = 0, version_minor = 1, version_patch = 0;

/// "0.1.0"
constexpr const char* version() noexcept { return "0.1.0"; }

}  // namespace gradscope

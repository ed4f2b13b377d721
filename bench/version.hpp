#pragma once

namespace helix {
const char* suite_version();
const char* git_sha();  // short SHA of the source tree, "-dirty" when it had local changes
}  // namespace helix

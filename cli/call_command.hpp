// `kiln build --call check|outline|targets` (and --check): what buildx's --call does instead
// of building, over the same flags (file, target, build args, contexts, platform).
#pragma once

#include "app.hpp"
#include "build_options.hpp"
#include "kiln/session/session.hpp"

namespace kiln::cli {

// Runs opts.call.function (not "build") for `request` (its file, target, build args and ignore
// rules are set). Base images are read from the store when it exists, never pulled. Returns the
// exit code: for check, 1 when there are findings (unless ignorestatus=true), else 0.
int call_command(const BuildCommandOptions& opts, const session::SessionRequest& request, Io io);

}  // namespace kiln::cli

// The write-it-yourself select backend (labs/03-multiplexing/ex_select.cpp,
// LAB.md exercise ex-select): the integration cases echo-select passes, run
// on ex-select, the FD_SETSIZE refusal among them. Labelled ex-select (the
// presets leave ^ex- labels out: as shipped the backend is not written, and
// these fail); the student runs them with
//     . scripts/lab.sh; lab_build ex-select test_ex_select && lab_ctest ex-select
#include "tests/labs/03-multiplexing/ex_mux_cases.hpp"

namespace {

const iolab::test::StudentHints kHints{
    .file = "labs/03-multiplexing/ex_select.cpp (SelectSet)",
    .no_echo =
        "no descriptor is reported ready: watch() must FD_SET its bit and raise maxfd_, "
        "wait() must pass maxfd_ + 1 and test every bit up to maxfd_ in select's answer",
    .reused_fd =
        "the listener is not reported after the first client: are the masters copied "
        "before select() (it overwrites the sets it is given with its answer)?",
    .no_stop =
        "the stop signalfd (watched first, like any descriptor) is never reported: are "
        "the masters copied before select() writes its answer over them?",
};

}  // namespace

IOLAB_STUDENT_MUX_CASES("ex-select", "ex-select", kHints)

TEST_CASE("ex-select: refuses descriptors >= FD_SETSIZE and keeps serving", "[ex-select]") {
    iolab::test::require_basic_echo({iolab::test::bin("ex-select"), "--port", "0"}, kHints);
    iolab::test::check_fd_setsize_refusal("ex-select");
}

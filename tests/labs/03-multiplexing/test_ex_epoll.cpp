// The write-it-yourself epoll backend (labs/03-multiplexing/ex_epoll.cpp,
// LAB.md exercise ex-epoll): the integration cases echo-epoll passes, run on
// ex-epoll. Labelled ex-epoll (the presets leave ^ex- labels out: as shipped
// the backend is not written, and these fail); the student runs them with
//     . scripts/lab.sh; lab_build ex-epoll test_ex_epoll && lab_ctest ex-epoll
#include "tests/labs/03-multiplexing/ex_mux_cases.hpp"

namespace {

const iolab::test::StudentHints kHints{
    .file = "labs/03-multiplexing/ex_epoll.cpp (EpollSet)",
    .no_echo =
        "no descriptor is reported ready: watch() must epoll_ctl(ADD) it with data.fd = "
        "fd, and wait() must call fired(data.fd, ...) for each event epoll_wait returns",
    .reused_fd =
        "the second client got the first one's descriptor number and watch() took it "
        "as known: forget() must EPOLL_CTL_DEL it and reset its mask_",
    .no_stop = "the stop signalfd (watched first, like any descriptor) is never reported",
};

}  // namespace

IOLAB_STUDENT_MUX_CASES("ex-epoll", "ex-epoll", kHints)

TEST_CASE("ex-epoll --edge: concurrent clients get byte-exact echoes", "[ex-epoll]") {
    iolab::test::require_basic_echo({iolab::test::bin("ex-epoll"), "--port", "0", "--edge"},
                                    kHints);
    iolab::test::check_concurrent_echo(iolab::test::EchoServerSpec{"ex-epoll", {"--edge"}});
}

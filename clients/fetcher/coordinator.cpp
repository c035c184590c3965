// The job source shared by the four modes: a URL list, or a crawl frontier
// that grows as pages come back (each URL fetched once, same host only).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "clients/fetcher/fetcher.hpp"
#include "common/error.hpp"
#include "common/io.hpp"
#include "common/server.hpp"

namespace fetcher {

using iolab::http::Url;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

Coordinator::Coordinator(const Options& opts, const std::vector<Url>& urls) : opts_(opts) {
    if (!opts.crawl.empty()) {
        Url start = iolab::http::parse_url(opts.crawl);
        crawl_authority_ = start.scheme + "://" + start.authority();
        enqueue_locked(start);
    }
    for (const Url& u : urls) {
        Job j{created_++, u};
        results_.emplace_back();
        queue_.push_back(std::move(j));
    }
}

void Coordinator::enqueue_locked(const Url& url) {
    if (created_ >= opts_.max_pages) return;
    if (!seen_.insert(url.to_string()).second) return;
    results_.emplace_back();
    queue_.push_back(Job{created_++, url});
}

std::optional<Job> Coordinator::next() {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return std::nullopt;
    Job j = std::move(queue_.front());
    queue_.pop_front();
    ++outstanding_;
    return j;
}

std::optional<Job> Coordinator::next_wait() {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return !queue_.empty() || outstanding_ == 0; });
    if (queue_.empty()) return std::nullopt;
    Job j = std::move(queue_.front());
    queue_.pop_front();
    ++outstanding_;
    return j;
}

bool Coordinator::finished() {
    std::lock_guard lock(mu_);
    return queue_.empty() && outstanding_ == 0;
}

namespace {

std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
    }
    return out + "\"";
}

// DIR/0007_site_page_3: the job's index keeps names unique.
std::string file_name_for(std::size_t index, const Url& url) {
    std::string name = std::to_string(index);
    name.insert(0, name.size() < 4 ? 4 - name.size() : 0, '0');
    std::string path(url.target);
    std::string clean;
    for (char c : path) {
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.';
        clean.push_back(keep ? c : '_');
        if (clean.size() >= 100) break;
    }
    return name + clean;
}

void save_body(const std::string& dir, std::size_t index, const Url& url, Result& r) {
    std::string path = dir + "/" + file_name_for(index, url);
    iolab::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) {
        iolab::log_line("fetcher: " + iolab::sys_message("open", path, errno));
        return;
    }
    auto w = iolab::write_all(fd.get(), {r.body.data(), r.body.size()});
    if (!w.ok()) iolab::log_line("fetcher: " + w.describe("write", path));
}

}  // namespace

std::string format_result(const Result& r) {
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f", r.ms);
    if (!r.answered()) return r.url + " error=" + quote(r.error) + " ms=" + ms + "\n";
    return r.url + " status=" + std::to_string(r.status) + " bytes=" + std::to_string(r.bytes) +
           " ms=" + ms + "\n";
}

void Coordinator::complete(const Job& job, Result result) {
    if (!opts_.out_dir.empty() && result.answered())
        save_body(opts_.out_dir, job.index, job.url, result);
    std::lock_guard lock(mu_);
    if (!opts_.crawl.empty() && result.answered() && result.status == 200 &&
        result.content_type.find("html") != std::string::npos) {
        for (const std::string& href : extract_links(result.body)) {
            try {
                Url u = iolab::http::resolve_url(job.url, href);
                if (u.scheme + "://" + u.authority() == crawl_authority_) enqueue_locked(u);
            } catch (const iolab::http::UrlError&) {
                // mailto:, javascript:, malformed: not ours to follow
            }
        }
    }
    result.body.clear();
    result.body.shrink_to_fit();
    if (opts_.as_completed) {
        // Printed as it finishes, under the lock: one whole line at a time,
        // whichever thread completes it.
        std::string line = format_result(result);
        auto w = iolab::write_all(1, {line.data(), line.size()});
        if (!w.ok()) iolab::log_line("fetcher: " + w.describe("write", "stdout"));
    }
    results_[job.index] = std::move(result);
    --outstanding_;
    changed_.notify_all();
}

std::vector<Result> Coordinator::take_results() {
    std::lock_guard lock(mu_);
    return std::move(results_);
}

std::vector<std::string> extract_links(std::string_view html) {
    std::vector<std::string> out;
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
    std::size_t i = 0;
    while (i + 4 < html.size()) {
        // "href" as an attribute name: preceded by whitespace.
        if (!(lower(html[i]) == 'h' && lower(html[i + 1]) == 'r' && lower(html[i + 2]) == 'e' &&
              lower(html[i + 3]) == 'f') ||
            i == 0 || !(html[i - 1] == ' ' || html[i - 1] == '\t' || html[i - 1] == '\n')) {
            ++i;
            continue;
        }
        std::size_t j = i + 4;
        while (j < html.size() && (html[j] == ' ' || html[j] == '\t' || html[j] == '\n'))
            ++j;
        if (j >= html.size() || html[j] != '=') {
            i = j;
            continue;
        }
        ++j;
        while (j < html.size() && (html[j] == ' ' || html[j] == '\t' || html[j] == '\n'))
            ++j;
        if (j >= html.size()) break;
        std::size_t end;
        if (html[j] == '"' || html[j] == '\'') {
            char q = html[j++];
            end = html.find(q, j);
            if (end == std::string_view::npos) break;
        } else {
            end = html.find_first_of(" \t\n>", j);
            if (end == std::string_view::npos) end = html.size();
        }
        if (end - j <= 8192) out.emplace_back(html.substr(j, end - j));
        i = end;
    }
    return out;
}

iolab::http::ResponseParser make_parser(const Options& opts) {
    iolab::http::Limits limits;
    limits.max_body = opts.max_body;
    iolab::http::ResponseParser p(limits);
    if (!opts.keep_bodies()) {
        p.on_body([](std::string_view) {});  // counted by the parser, not kept
    }
    return p;
}

void take_response(iolab::http::ResponseParser& parser, Result& result) {
    const auto& r = parser.response();
    result.status = r.status;
    result.bytes = parser.body_bytes();
    if (auto ct = r.headers.get("Content-Type")) result.content_type = std::string(*ct);
    result.body = std::move(parser.response().body);
}

}  // namespace fetcher

int main() {
    int n = 0;
    // [lab:loop]
    for (int i = 0; i < 3; ++i) {
        n += 2 * i;
    }
    // [/lab:loop]
    return n;
}

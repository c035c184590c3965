int main() {
    int n = 0;
    // [lab:loop]
    for (int i = 0; i < 3; ++i) {
        n += i;
    }
    // [/lab:loop]
    // [lab:loop]
    return n;
    // [/lab:loop]
}
